"""The simulated base is valid, deterministic, realistic where it matters, and its oracle is honest."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pandas as pd
import pytest

from core.contracts import load_tables
from simulation.accounts import renewal_days
from simulation.config import SimulationConfig
from simulation.oracle import churn_probability
from simulation.simulate import simulate
from simulation.textbank import TONE_SENTENCES

pytestmark = pytest.mark.slow
WINDOW = pd.Timestamp("2024-01-01", tz="UTC")


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    ranks = pd.Series(score).rank().to_numpy()
    pos = y.astype(bool)
    n1, n0 = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


@pytest.fixture(scope="module")
def tables(simulated):
    return load_tables(simulated).tables


@pytest.fixture(scope="module")
def panel(tables) -> pd.DataFrame:
    """Monthly snapshots of live accounts with realised 90-day labels (uncensored cutoffs only)."""
    a = tables["accounts"].merge(tables["churn"], on="account_id", how="left")
    frames = []
    for k in range(60, 730 - 90, 30):
        cutoff = WINDOW + pd.Timedelta(days=k)
        live = a[(a["contract_start"] < cutoff) & ~(a["churned_at"] <= cutoff)]
        y = (live["churned_at"] > cutoff) & (live["churned_at"] <= cutoff + pd.Timedelta(days=90))
        frames.append(
            pd.DataFrame(
                {
                    "account_id": live["account_id"].to_numpy(),
                    "cutoff": cutoff,
                    "y": y.fillna(False).to_numpy(dtype=int),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def test_simulated_tables_meet_the_contracts(tables):
    assert len(tables["accounts"]) == 3000
    assert all(len(tables[name]) > 0 for name in tables)


def _digest(folder) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_identical_files(tmp_path):
    config = SimulationConfig(accounts=2500, days=200, seed=11)  # two blocks
    simulate(config, tmp_path / "a")
    simulate(config, tmp_path / "b")
    a, b = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert a == b and len(a) >= 14
    simulate(config.model_copy(update={"seed": 12}), tmp_path / "c")
    assert _digest(tmp_path / "c")["tickets.parquet"] != a["tickets.parquet"]


def test_yearly_churn_rate_in_band(tables):
    a = tables["accounts"].merge(tables["churn"], on="account_id", how="left")
    end = WINDOW + pd.Timedelta(days=730)
    start = a["contract_start"].clip(lower=WINDOW)
    stop = a["churned_at"].fillna(end).clip(upper=end)
    years = ((stop - start).dt.total_seconds().clip(lower=0) / (365.25 * 86400)).sum()
    rate = 1 - np.exp(-len(tables["churn"]) / years)
    print(f"realised yearly churn rate {rate:.3f} (target 0.12)")
    assert 0.08 <= rate <= 0.17


def test_usage_worse_before_churn_than_retained_at_same_tenure(tables):
    a = tables["accounts"].merge(tables["churn"], on="account_id", how="left")
    u = tables["usage_daily"].merge(a[["account_id", "contract_start", "churned_at", "seats"]], on="account_id")
    u["active_share"] = u["active_users"].astype(float) / u["seats"].astype(float)
    u["tenure_bucket"] = (u["date"] - u["contract_start"]).dt.days // 90
    days_to_churn = (u["churned_at"] - u["date"]).dt.days
    before = u[(days_to_churn >= 30) & (days_to_churn < 90)]
    retained = u[u["churned_at"].isna()].groupby("tenure_bucket")["active_share"].mean()
    per_churner = before.groupby("account_id").agg(share=("active_share", "mean"), bucket=("tenure_bucket", "median"))
    per_churner["retained"] = retained.reindex(per_churner["bucket"].round().astype(int)).to_numpy()
    print(
        f"active share 30-90 days before churn {per_churner['share'].mean():.3f} vs retained {per_churner['retained'].mean():.3f}"
    )
    assert per_churner["share"].mean() < 0.8 * per_churner["retained"].mean()
    assert (per_churner["share"] < per_churner["retained"]).mean() > 0.6


def test_customer_tone_worse_before_churn(tables):
    msgs = tables["ticket_messages"]
    msgs = msgs[msgs["author"] == "customer"].merge(
        tables["tickets"][["ticket_id", "account_id", "created_at"]], on="ticket_id"
    )
    negative = "|".join(re.escape(s[:25]) for s in TONE_SENTENCES["negative"] + TONE_SENTENCES["angry"])
    msgs["negative"] = msgs["body"].str.contains(negative, regex=True)
    msgs = msgs.merge(tables["churn"], on="account_id", how="left")
    days_to_churn = (msgs["churned_at"] - msgs["sent_at"]).dt.days
    before = msgs[(days_to_churn >= 30) & (days_to_churn < 90)]["negative"].mean()
    retained = msgs[msgs["churned_at"].isna()]["negative"].mean()
    print(f"negative customer messages: {before:.3f} 30-90 days before churn vs {retained:.3f} for retained accounts")
    assert before > 1.3 * retained


def test_annual_churn_concentrates_at_renewal(simulated, tables):
    traits = pd.read_parquet(simulated / "truth" / "accounts.parquet")
    c = tables["churn"].merge(traits[["account_id", "start_day", "billing"]], on="account_id")
    day = ((c["churned_at"] - WINDOW) // pd.Timedelta(days=1)).to_numpy()
    renewal = renewal_days(c["start_day"].to_numpy(), c["billing"].to_numpy(dtype=object), WINDOW.date(), 731)
    on_renewal = renewal[np.arange(len(c)), day]
    annual = (c["billing"] == "annual").to_numpy()
    print(f"churn on a renewal day: annual {on_renewal[annual].mean():.2f}, monthly {on_renewal[~annual].mean():.2f}")
    assert on_renewal[annual].mean() > 0.5  # vs 1/365 of days being renewal days
    assert on_renewal[~annual].mean() < 0.15  # monthly accounts churn on any day


def test_some_churn_is_unforeseeable_and_causes_are_recorded(simulated, tables):
    causes = pd.read_parquet(simulated / "truth" / "churn_causes.parquet")
    assert set(causes["account_id"]) == set(tables["churn"]["account_id"])
    share = (causes["cause"] == "unforeseeable").mean()
    assert 0.08 < share < 0.35
    assert {"budget_cut", "acquisition", "gradual_decline"} <= set(causes["driver"])


def test_oracle_is_informative_calibrated_and_not_perfect(simulated, panel):
    oracle = churn_probability(simulated / "truth", panel, n_paths=64, seed=1)
    p = oracle["oracle_90d"].to_numpy()
    assert not np.isnan(p).any()
    auc = roc_auc(panel["y"].to_numpy(), p)
    print(f"oracle 90-day ROC-AUC on realised labels: {auc:.3f}; mean p {p.mean():.4f} vs rate {panel['y'].mean():.4f}")
    assert 0.70 < auc < 0.97
    assert abs(p.mean() - panel["y"].mean()) < 0.25 * panel["y"].mean()
    curve = oracle[["oracle_30d", "oracle_60d", "oracle_90d", "oracle_180d"]].to_numpy()
    assert (np.diff(curve, axis=1) >= 0).all()


def test_oracle_uses_nothing_after_the_cutoff(simulated, tmp_path, panel):
    """Truncating truth/ at the cutoff leaves the oracle unchanged."""
    cutoff = WINDOW + pd.Timedelta(days=300)
    rows = panel[panel["cutoff"] == cutoff].head(400)
    full = churn_probability(simulated / "truth", rows, n_paths=32, seed=5)
    cut = tmp_path / "truth"
    cut.mkdir()
    for name in ("accounts.parquet", "churn_causes.parquet", "meta.json"):
        (cut / name).write_bytes((simulated / "truth" / name).read_bytes())
    daily = pd.read_parquet(simulated / "truth" / "daily.parquet")
    daily[daily["day"] < 300].to_parquet(cut / "daily.parquet")
    shocks = pd.read_parquet(simulated / "truth" / "shocks.parquet")
    shocks[shocks["day"] < 300].to_parquet(cut / "shocks.parquet")
    pd.testing.assert_frame_equal(full, churn_probability(cut, rows, n_paths=32, seed=5))


def test_oracle_gives_nan_without_a_snapshot(simulated, tables):
    churned = tables["churn"].iloc[0]
    late = tables["accounts"].sort_values("contract_start").iloc[-1]
    rows = pd.DataFrame(
        {
            "account_id": [churned["account_id"], late["account_id"]],
            "cutoff": [
                churned["churned_at"].floor("D") + pd.Timedelta(days=2),
                late["contract_start"] - pd.Timedelta(days=1),
            ],
        }
    )
    assert churn_probability(simulated / "truth", rows, n_paths=8)["oracle_90d"].isna().all()


def test_ticket_text_reads_like_support(tables):
    msgs = tables["ticket_messages"]
    customer = msgs[msgs["author"] == "customer"]["body"]
    assert customer.str.contains(r"[\w.]+@[\w-]+\.com", regex=True).mean() > 0.02  # emails to mask later
    assert customer.str.contains(r"\+1 \d{3}-555-\d{4}", regex=True).any()  # phone numbers
    assert customer.str.contains(r"\d{4} \d{4} \d{4} \d{4}", regex=True).any()  # card numbers
    assert customer.str.contains(r"ERR-\d+|HTTP \d{3}|E\d{4}", regex=True).any()  # error codes
    assert customer.str.contains(r"v\d+\.\d+\.\d+", regex=True).any()  # versions
    assert customer.str.contains(r"(?:eu|us|ap|ca)-\w+-\d", regex=True).any()  # regions
    assert customer.nunique() > 0.3 * len(customer)  # many phrasings, not one sentence per class
    assert (
        customer.str.contains("cancel|manager|legal team|chargeback|disappointed", case=False, regex=True).mean() > 0.01
    )


def test_repeats_rephrasings_and_critical_moments_track_poor_health(simulated, tables):
    truth = pd.read_parquet(simulated / "truth" / "tickets.parquet").merge(
        tables["tickets"][["ticket_id", "account_id"]], on="ticket_id"
    )
    churned = truth["account_id"].isin(tables["churn"]["account_id"])
    for column in ("rephrasings", "critical_moments", "repeat_of_previous"):
        a, b = truth.loc[churned, column].astype(float).mean(), truth.loc[~churned, column].astype(float).mean()
        print(f"{column}: churned accounts {a:.3f} vs retained {b:.3f}")
        assert a > 1.2 * b
    assert (truth["rephrasings"] >= 3).any()  # the "asked three times" case exists


def test_survey_answers_carry_submission_bias(simulated, tables):
    truth = pd.read_parquet(simulated / "truth" / "tickets.parquet")
    answered = tables["ticket_events"].query("kind == 'csat'")["value"]
    extreme_answered = answered.isin([1, 5]).mean()
    extreme_true = truth["true_csat"].isin([1, 5]).mean()
    print(f"extreme CSAT: {extreme_answered:.2f} of answers vs {extreme_true:.2f} of all tickets")
    assert extreme_answered > extreme_true + 0.1
    nps = tables["surveys"]["score"].astype(int)
    assert ((nps <= 4) | (nps >= 9)).mean() > 0.5


def test_open_tickets_at_the_end_have_no_future_events(tables):
    end = WINDOW + pd.Timedelta(days=730)
    assert (tables["ticket_events"]["at"] < end).all() and (tables["ticket_messages"]["sent_at"] < end).all()
    resolved = tables["ticket_events"].query("kind == 'resolved'")["ticket_id"].unique()
    assert (~tables["tickets"]["ticket_id"].isin(resolved)).sum() > 0  # some tickets are still open
