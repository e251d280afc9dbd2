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
        ("markdown", "# 01 Explore the data\nThe input tables as the contracts read them, the churn rate, and what happens before a churn."),
        ("code", SETUP),
        ("code", """\
from core.contracts import load_tables

loaded = load_tables(settings.data_dir)
tables = loaded.tables
pd.Series({name: len(frame) for name, frame in tables.items()}, name="rows").to_frame()"""),
        ("code", """\
accounts, churn = tables["accounts"], tables["churn"]
print(f"{len(accounts):,} accounts, {len(churn):,} churned ({len(churn) / len(accounts):.1%})")
accounts.assign(churned=accounts["account_id"].isin(churn["account_id"])).groupby(["segment", "billing"])["churned"].agg(["size", "mean"])"""),
        ("code", """\
# weekly active users in the 120 days before churn, against accounts that stayed (same calendar days)
usage = tables["usage_daily"].merge(churn, on="account_id", how="left")
usage["days_before_churn"] = (usage["churned_at"] - usage["date"]).dt.days
before = usage[usage["days_before_churn"].between(0, 120)]
curve = before.groupby(before["days_before_churn"] // 7 * 7)["active_users"].mean()
stayed = usage.loc[usage["churned_at"].isna(), "active_users"].mean()
ax = curve.sort_index(ascending=False).plot(title="active users per day before churn (dashed: accounts that stayed)")
ax.axhline(stayed, linestyle="--")
ax.set_xlabel("days before churn")
curve.sort_index().head()"""),
        ("code", """\
tickets = tables["tickets"].assign(churned=lambda t: t["account_id"].isin(churn["account_id"]))
pd.crosstab(tickets["category"], tickets["churned"], normalize="columns").round(3)"""),
    ],
    "02_evaluate_model.ipynb": [
        ("markdown", "# 02 Evaluate a model from MLflow\nThe served model's backtest against the baselines, its calibration, and what it relies on."),
        ("code", SETUP),
        ("code", """\
from models import registry

registry.connect(settings.mlflow_tracking_uri)
info = registry.version_info("champion") or registry.version_info("challenger")
print("version", info["version"], "run", info["run_id"])
metrics = pd.Series({k: v for k, v in info["metrics"].items() if k.startswith("backtest.")}, name="value")
metrics.to_frame().head(20)"""),
        ("code", """\
path = registry.run_artifact(info["run_id"], "backtest.csv")
if path:
    display_table = pd.read_csv(path).pivot_table(index="model", columns="horizon_days", values=["roc_auc", "ece"]).round(3)
else:
    display_table = "this run logged no backtest table (models registered by `churn train` have one)"
display_table"""),
        ("code", """\
from IPython.display import Image, display

figure = registry.run_artifact(info["run_id"], "calibration.png")
display(Image(filename=str(figure))) if figure else print("no calibration figure logged")"""),
        ("code", """\
model = registry.load_curve(f"models:/churn-risk/{info['version']}")
print(model.formulation, len(model.features), "features; trained on outcomes up to", model.info.get("trained_through"))
pd.Series(model.boosters[0].feature_importance("gain"), index=model.boosters[0].feature_name()).sort_values(ascending=False).head(10)"""),
    ],
    "03_explain_account.ipynb": [
        ("markdown", "# 03 Explain one account\nThe riskiest account of the latest scoring run: its risk curve, why, and what the policy decides."),
        ("code", SETUP),
        ("code", """\
from pathlib import Path

scores_dir = Path(settings.scores_dir or Path(settings.data_dir) / "scores")
scores = pd.read_parquet(scores_dir / "scores.parquet")
snapshot = pd.read_parquet(scores_dir / "features.parquet")
account = scores.sort_values("p_90d", ascending=False).iloc[0]
print(account["account_id"], account[["p_30d", "p_60d", "p_90d", "p_180d"]].round(3).to_dict(), account["tier"])"""),
        ("code", """\
from features.registry import feature_specs
from models import registry
from models.explain import by_family, contributions, top_reasons

registry.connect(settings.mlflow_tracking_uri)
model = registry.load_curve(settings.model_uri)
row = snapshot[snapshot["account_id"] == account["account_id"]]
contrib = contributions(model, row, 90)
specs = feature_specs()
reasons = top_reasons(contrib.iloc[0], row.iloc[0], specs, n=5)
for direction, items in reasons.items():
    print(direction)
    for item in items:
        print(f"  {item['sentence']}  ({item['contribution']:+.3f})")"""),
        ("code", """\
by_family(contrib, specs).T.rename(columns={contrib.index[0]: "log-odds"}).sort_values("log-odds").plot.barh(legend=False, title="risk by family of signals")"""),
        ("code", """\
import datetime as dt

from escalation.decision import AccountFacts, RiskView, decide
from escalation.policy import load_policy

policy = load_policy(settings.config_dir)
facts = AccountFacts(account_id=account["account_id"], segment=row["segment"].iloc[0], arr=float(row["arr_current"].iloc[0]),
                     average_arr=float(snapshot["arr_current"].mean()), days_to_renewal=float(row["days_to_renewal"].iloc[0]))
risk = RiskView({h: float(account[f"p_{h}d"]) for h in (30, 60, 90, 180)}, tuple(reasons["raising"]))
decision = decide(facts, risk, None, policy, dt.datetime.now(dt.UTC))
print(decision.band, decision.queue, [r.detail for r in decision.rules])"""),
    ],
}


def build(folder: Path = Path(__file__).parent) -> list[Path]:
    written = []
    for name, cells in NOTEBOOKS.items():
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_markdown_cell(text) if kind == "markdown" else nbformat.v4.new_code_cell(text) for kind, text in cells]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        path = folder / name
        nbformat.write(nb, path)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in build():
        print("wrote", path)
