"""Writes the notebooks from the cells below, so they stay reviewable as code and are regenerated,
not hand-edited: `python notebooks/build.py`. The notebooks read their locations from the same
settings as the CLI (CHURN_DATA_DIR, CHURN_MLFLOW_TRACKING_URI, CHURN_SCORES_DIR), so they run on the
demo's output (`make demo`) and, in the test suite, on a small simulated base.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

SETUP = """\
import pandas as pd

from core.settings import load_settings

settings = load_settings()
pd.set_option("display.width", 160)
print("data:", settings.data_dir, "| MLflow:", settings.mlflow_tracking_uri, "| scores:", settings.scores_dir)"""

NOTEBOOKS = {
    "01_explore_data.ipynb": [
        (
            "markdown",
            "# 01 Explore the data\nThe input tables as the contracts read them, the churn rate, and what happens before a churn.",
        ),
        ("code", SETUP),
        (
            "code",
            """\
from core.contracts import load_tables

loaded = load_tables(settings.data_dir)
tables = loaded.tables
pd.Series({name: len(frame) for name, frame in tables.items()}, name="rows").to_frame()""",
        ),
        (
            "code",
            """\
accounts, churn = tables["accounts"], tables["churn"]
print(f"{len(accounts):,} accounts, {len(churn):,} churned ({len(churn) / len(accounts):.1%})")
churned = accounts.assign(churned=accounts["account_id"].isin(churn["account_id"]))
churned.groupby(["segment", "billing"])["churned"].agg(["size", "mean"])""",
        ),
        (
            "code",
            """\
# weekly active users in the 120 days before churn, against accounts that stayed (same calendar days)
usage = tables["usage_daily"].merge(churn, on="account_id", how="left")
usage["days_before_churn"] = (usage["churned_at"] - usage["date"]).dt.days
before = usage[usage["days_before_churn"].between(0, 120)]
curve = before.groupby(before["days_before_churn"] // 7 * 7)["active_users"].mean()
stayed = usage.loc[usage["churned_at"].isna(), "active_users"].mean()
ax = curve.sort_index(ascending=False).plot(title="active users per day before churn (dashed: accounts that stayed)")
ax.axhline(stayed, linestyle="--")
ax.set_xlabel("days before churn")
curve.sort_index().head()""",
        ),
        (
            "code",
            """\
tickets = tables["tickets"].assign(churned=lambda t: t["account_id"].isin(churn["account_id"]))
pd.crosstab(tickets["category"], tickets["churned"], normalize="columns").round(3)""",
        ),
    ],
    "02_evaluate_model.ipynb": [
        (
            "markdown",
            "# 02 Evaluate a model from MLflow\nThe served model's backtest against the baselines, its calibration, and what it relies on.",
        ),
        ("code", SETUP),
        (
            "code",
            """\
from models import registry

registry.connect(settings.mlflow_tracking_uri)
info = registry.version_info("champion") or registry.version_info("challenger")
print("version", info["version"], "run", info["run_id"])
metrics = pd.Series({k: v for k, v in info["metrics"].items() if k.startswith("backtest.")}, name="value")
metrics.to_frame().head(20)""",
        ),
        (
            "code",
            """\
path = registry.run_artifact(info["run_id"], "backtest.csv")
if path:
    display_table = pd.read_csv(path).pivot_table(index="model", columns="horizon_days", values=["roc_auc", "ece"]).round(3)
else:
    display_table = "this run logged no backtest table (models registered by `churn train` have one)"
display_table""",
        ),
        (
            "code",
            """\
from IPython.display import Image, display

figure = registry.run_artifact(info["run_id"], "calibration.png")
display(Image(filename=str(figure))) if figure else print("no calibration figure logged")""",
        ),
        (
            "code",
            """\
from features.registry import feature_specs
from models.explain import contributions, global_importance
from pipelines.features import read_snapshots

# the LightGBM curve, or the logistic baseline where `churn promote --model baseline` registered it: the same interface
model = registry.load_curve(f"models:/churn-risk/{info['version']}")
print(model.kind, model.formulation, len(model.features), "features; trained on outcomes up to", model.info.get("trained_through"))
panel = read_snapshots(info["tags"]["features_dir"])
latest = panel[panel["cutoff"] == panel["cutoff"].max()]
# what it relies on: each feature's mean |contribution| to the 90-day log-odds over the latest snapshot
global_importance(contributions(model, latest, 90), feature_specs()).head(10)""",
        ),
    ],
    "03_explain_account.ipynb": [
        (
            "markdown",
            """\
# 03 Explain one account
The riskiest account of the latest scoring run: its risk curve, why (shap's waterfall), how the logistic baseline explains it, the reasons
CS reads, and what the policy decides.""",
        ),
        ("code", SETUP),
        (
            "code",
            """\
from pathlib import Path

scores_dir = Path(settings.scores_dir or Path(settings.data_dir) / "scores")
scores = pd.read_parquet(scores_dir / "scores.parquet")
snapshot = pd.read_parquet(scores_dir / "features.parquet")
account = scores.sort_values("p_90d", ascending=False).iloc[0]
print(account["account_id"], account[["p_30d", "p_60d", "p_90d", "p_180d"]].round(3).to_dict(), account["tier"])""",
        ),
        (
            "markdown",
            """\
## Why: shap's waterfall
`models.explain.explanation(model, rows, horizon_days)` returns a `shap.Explanation` (exact TreeSHAP on the model's boosters), in
log-odds: from the base's average score E[f(X)] at the bottom, each feature pushes the account's score up (red) or down (blue) to f(x)
at the top. +0.69 doubles the odds of churning. The names are the feature dictionary's descriptions (`models.plots.readable`).""",
        ),
        (
            "code",
            """\
import shap

from features.registry import feature_specs
from models import registry
from models.explain import explanation
from models.plots import readable

registry.connect(settings.mlflow_tracking_uri)
model = registry.load_curve(settings.model_uri)
specs = feature_specs()
row = snapshot[snapshot["account_id"] == account["account_id"]]
explained = explanation(model, row, 90)
shap.plots.waterfall(readable(explained, specs)[0], max_display=12)""",
        ),
        (
            "markdown",
            """\
## The logistic baseline's view of the same account
The backtest's logistic baseline, fitted on the model's last year of training snapshots, explained with `shap.LinearExplainer`
(`models.explain.baseline_explanation`: a number and its missing indicator, or a category's one-hot levels, summed back into one
feature), against the same snapshots. Where the two agree on the top features, the reason is not an accident of one model.""",
        ),
        (
            "code",
            """\
from models.baselines import LogisticBaseline
from models.explain import baseline_explanation
from pipelines.features import read_snapshots

panel = read_snapshots(registry.describe(settings.model_uri)["tags"]["features_dir"])
recent = panel[panel["cutoff"] >= panel["cutoff"].max() - pd.Timedelta(days=365)]
baseline = LogisticBaseline(model.features).fit(recent)
linear = baseline_explanation(baseline, row, 90, reference=recent)
shap.plots.waterfall(readable(linear, specs)[0], max_display=12)""",
        ),
        (
            "code",
            """\
def top_features(e, n=8):
    first = readable(e, specs)[0]
    order = abs(first.values).argsort()[::-1][:n]
    return pd.DataFrame({"feature": [first.feature_names[i] for i in order], "log-odds": first.values[order].round(3)})


pd.set_option("display.max_colwidth", 70)
served = "risk model (LightGBM, TreeExplainer)" if model.kind == "lightgbm" else "served logistic baseline (LinearExplainer)"
side = pd.concat({served: top_features(explained),
                  "logistic baseline (LinearExplainer)": top_features(linear)}, axis=1)
shared = set(side.iloc[:, 0]) & set(side.iloc[:, 2])
print(f"{len(shared)} of the top {len(side)} features are shared")
side""",
        ),
        (
            "markdown",
            """\
## The reasons CS reads
Drivers (behaviour that can change) apart from context (who the account is), each with the account's own number against its prior
90 days and the typical account of its segment, and its effect in points of the 90-day risk measured from the base's average
(`models.reasons`): the base rate plus every feature's points add up to the account's risk.""",
        ),
        (
            "code",
            """\
import numpy as np

from models.reasons import Reference, account_reasons, points

X = model.encode(snapshot)
risk = model.curve_matrix(X)[:, 2]
contrib = model.contributions_matrix(X, 90)[:, :-1]
reference = Reference.of(90, risk, contrib, snapshot, model.features, specs)
pts, rest = points(contrib, risk, reference)
i = int(np.flatnonzero(snapshot["account_id"].to_numpy() == account["account_id"])[-1])
reasons = account_reasons(contrib[i], pts[i], float(rest[i]), model.features, snapshot.iloc[i].to_dict(), specs, reference, n=5)
print(
    f"90-day risk {risk[i]:.1%} = base rate {reasons['base_rate']:.1%} + the points below (+ "
    f"{reasons['rest_points']:.2f} not carried by one feature)"
)
for key in ("raising", "lowering", "context"):
    print(key)
    for item in reasons[key]:
        print(f"  {item['sentence']}: {item['effect']}")""",
        ),
        (
            "code",
            """\
pd.Series(reasons["points_by_family"]).sort_values().plot.barh(title="90-day risk by family of signals, in points")""",
        ),
        (
            "code",
            """\
import datetime as dt

from escalation.decision import AccountFacts, RiskView, decide
from escalation.policy import load_policy

policy = load_policy(settings.config_dir)
facts = AccountFacts(account_id=account["account_id"], segment=row["segment"].iloc[0], arr=float(row["arr_current"].iloc[0]),
                     average_arr=float(snapshot["arr_current"].mean()), days_to_renewal=float(row["days_to_renewal"].iloc[0]))
risk = RiskView({h: float(account[f"p_{h}d"]) for h in (30, 60, 90, 180)}, tuple(reasons["raising"]))
decision = decide(facts, risk, None, policy, dt.datetime.now(dt.UTC))
print(decision.band, decision.queue, [r.detail for r in decision.rules])""",
        ),
    ],
}


def build(folder: Path = Path(__file__).parent) -> list[Path]:
    written = []
    for name, cells in NOTEBOOKS.items():
        nb = nbformat.v4.new_notebook()
        # cell ids by position, so rebuilding an unchanged notebook rewrites nothing
        nb.cells = [
            (nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell)(text, id=f"cell-{i}")
            for i, (kind, text) in enumerate(cells)
        ]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        path = folder / name
        nbformat.write(nb, path)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in build():
        print("wrote", path)
