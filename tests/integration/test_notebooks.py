"""The notebooks run top to bottom on a small simulated base (the package imported, no mocks)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    from tests.conftest import champion_environment

    with champion_environment(tmp_path_factory.mktemp("notebooks")) as env:
        yield env


def test_the_three_notebooks_exist():
    assert [p.name for p in NOTEBOOKS] == [
        "01_explore_data.ipynb",
        "02_evaluate_model.ipynb",
        "03_explain_account.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, environment):
    from tests.conftest import run_notebook

    outputs = run_notebook(path)
    assert [o for o in outputs if o.get("output_type") == "error"] == []
    assert outputs
    if path.stem == "03_explain_account":
        # shap's waterfall for the model and the baseline, and their top features side by side
        assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2
        assert any("features are shared" in o.get("text", "") for o in outputs)
