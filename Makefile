# Each target bootstraps .venv itself: a fresh clone needs only Python 3.11 and make.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
# Reinstall whenever pyproject.toml changes (the stamp carries its hash).
STAMP  := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: demo test test-fast lint bench install serve clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing into $(VENV) (first run takes a minute or two)"
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/churn demo

# after `make demo`: the demo's model and scores (recorded in data/last_demo.json); CHURN_API_TOKENS=... make serve [PORT=3000]
PORT ?= 3000
serve: $(STAMP)
	$(BIN)/churn serve --port $(PORT)

# the suite on TEST_WORKERS processes, a test module's tests together on one (pytest-xdist), in the order
# tests/conftest.py gives them (slow modules first), not xdist's (most tests first)
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
test: $(STAMP)
	$(PYTEST)

test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

# style and import order everywhere; types on the pure layers (core, features, models, escalation)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/demo.py
	$(BIN)/python benchmarks/simulate.py
	$(BIN)/python benchmarks/features.py
	$(BIN)/python benchmarks/sentiment.py
	$(BIN)/python benchmarks/text_signals.py
	$(BIN)/python benchmarks/models.py
	$(BIN)/python benchmarks/quality.py
	$(BIN)/python benchmarks/holiday.py
	$(BIN)/python benchmarks/table.py
	$(BIN)/python benchmarks/serving.py
	$(BIN)/python benchmarks/relay.py
	$(BIN)/python benchmarks/holdout.py
	$(BIN)/python benchmarks/monitoring.py
	$(BIN)/python benchmarks/dask_path.py
	$(BIN)/python benchmarks/workspace.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis data/demo data/simulated
