"""The daily run: the policy over a whole simulated panel gives exactly the per-account decisions,
and the capacity evaluation counts what it says."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from escalation.batch import QUEUE_COLUMNS, apply_policy, evaluate_at_capacity
from escalation.decision import decide
from escalation.policy import EscalationPolicy
from escalation.signals import batch_inputs, candidates
from pipelines.features import read_snapshots
from simulation.config import SimulationConfig
from simulation.simulate import simulate
from tests.conftest import build_features

pytestmark = pytest.mark.slow
POLICY = EscalationPolicy()
NOW = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    simulate(SimulationConfig(accounts=500, days=400, seed=11), root / "data")
    build_features(str(root / "data"), str(root / "f"), "--every", "30d")
    panel = read_snapshots(root / "f")
    rng = np.random.default_rng(0)
    base = rng.beta(0.6, 12, len(panel))  # a spread of risks that crosses every threshold
    curve = np.maximum.accumulate(np.column_stack([base, base * 1.6, base * 2.1, base * 3.2]).clip(0, 1), axis=1)
    churned = pd.read_parquet(root / "data" / "churn.parquet").set_index("account_id")["churned_at"]
    return panel, curve, churned


def test_batch_equals_the_per_account_decision_on_every_row(scored):
    panel, curve, _ = scored
    panel = panel.reset_index(drop=True)
    average = panel.groupby("cutoff")["arr_current"].transform("mean").to_numpy()
    everyone = [
        decide(*batch_inputs(row, curve[i], (), POLICY, average_arr=float(average[i]), model_version="3"), POLICY, NOW)
        for i, row in enumerate(panel.to_dict("records"))
    ]
    banded = np.array([d.band != "none" for d in everyone])
    assert banded.any() and not banded.all()
    assert not (banded & ~candidates(panel, curve, POLICY)).any()  # the pre-filter never drops a row that fires
    decisions, queue = apply_policy(panel, curve, POLICY, NOW, model_version="3")
    assert list(queue.columns) == QUEUE_COLUMNS and len(decisions) == int(banded.sum()) == len(queue)
    expected = {(d.account_id, d.band, d.primary_reason) for d in everyone if d.band != "none"}
    assert {(d.account_id, d.band, d.primary_reason) for d in decisions} == expected
    bands = queue["band"].tolist()
    assert bands == sorted(bands, key=["critical", "high", "watch"].index)  # most urgent first


def test_capacity_evaluation_never_exceeds_capacity(scored):
    panel, curve, churned = scored
    result = evaluate_at_capacity(panel, curve, POLICY, capacity=0.05, churned_at=churned)
    known = panel["churned_within_90d"].notna()
    per_cutoff_budget = np.floor(0.05 * panel[known].groupby("cutoff").size()).sum()
    assert result["capacity_filled"]["accounts"] == per_cutoff_budget
    assert result["escalations"]["accounts"] <= per_cutoff_budget
    assert 0 <= result["capacity_filled"]["precision"] <= 1 and result["churners"] == int(
        panel.loc[known, "churned_within_90d"].sum()
    )
