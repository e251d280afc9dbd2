"""The test suite's guard against MLflow's stand-in module (tests/conftest.py `_only_paths_are_files`)."""

from __future__ import annotations

import sys

from hypothesis import given, settings
from hypothesis import strategies as st


def test_hypothesis_runs_with_mlflows_dbutils_stand_in_loaded(monkeypatch):
    from mlflow.models.utils import MockDbutils

    monkeypatch.setitem(sys.modules, "dbutils", MockDbutils())  # as while MLflow loads a model
    seen = []

    @settings(max_examples=100, database=None)
    @given(st.lists(st.tuples(st.text(), st.integers(0, 10_000)), min_size=1))
    def draw(x: list) -> None:
        seen.append(x)

    draw()
    assert len(seen) == 100
