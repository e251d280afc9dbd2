"""`churn score`: the daily run. Features at one cutoff, the champion's risk curve and reasons, the
escalation policy, the queue, and the escalations recorded in the operational store with their
handoff packages and alerts queued.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core.config import Config, load_config
from core.errors import ChurnError
from core.io import staged_output, write_json, write_parquet
from core.settings import Settings
from core.vocabulary import BANDS, CURVE_COLUMNS, HORIZONS
from models.curve import RiskCurveModel

if TYPE_CHECKING:
    from core.mapping import Mapper

TOP_REASONS = 3


def reason_table(
    model: RiskCurveModel,
    panel: pd.DataFrame,
    curve: np.ndarray,
    specs: dict,
    horizon_days: int = 90,
    n: int = TOP_REASONS,
) -> list[dict]:
    """For every row of the panel: the top `n` drivers raising its `horizon_days` risk and its top
    context, with points measured against the panel itself (the base scored at this cutoff)."""
    from models.reasons import Reference, top_reasons

    contrib = model.contributions_matrix(model.encode(panel), horizon_days)[:, :-1]
    risk = curve[:, HORIZONS.index(horizon_days)]
    reference = Reference.of(horizon_days, risk, contrib, panel, model.features, specs)
    # the segment names the typical account
    shown = [c for c in dict.fromkeys([*model.features, "segment"]) if c in panel.columns]
    return top_reasons(contrib, risk, model.features, panel[shown].to_dict("records"), specs, reference, n)


def run_score(
    data: Path,
    out: Path,
    *,
    settings: Settings,
    config: Config | None = None,
    as_of: str | None = None,
    text: bool = True,
    model_uri: str | None = None,
    progress: Callable[[str], None] | None = None,
    map_blocks: Mapper | None = None,
) -> dict:
    from core.contracts import TableFiles, coerce_columns
    from core.mapping import serial_map
    from escalation.batch import apply_policy
    from features.registry import feature_specs
    from models import registry
    from pipelines.features import read_snapshots, run_features
    from text.loading import text_source

    say = progress or (lambda _line: None)
    started = time.perf_counter()
    config = config or load_config(settings.config_dir)  # a bad configuration fails before any work
    policy = config.escalation
    registry.connect(settings.mlflow_tracking_uri)
    uri = model_uri or f"models:/{registry.MODEL_NAME}@{registry.CHAMPION}"
    described = registry.describe(uri)
    if model_uri is None and described is None:
        raise ChurnError(
            f"no model has the alias '{registry.CHAMPION}' in {settings.mlflow_tracking_uri}: run `churn train` and `churn promote` first"
        )
    model = registry.load_curve(uri)
    version = described["version"] if described else uri
    say(f"model {uri} (version {version}), {len(model.features)} features")
    needs_text = any(
        spec.family in ("text", "experience") for name, spec in feature_specs().items() if name in model.features
    )
    use_text = text and needs_text
    with tempfile.TemporaryDirectory(prefix="churn-score-") as tmp:
        with text_source(settings, Path(data), use_text) as source:
            summary = run_features(
                data,
                Path(tmp) / "features",
                as_of=as_of or "latest",
                params=config.features,
                text=source,
                progress=lambda step, seconds: say(f"features: {step} {seconds:.1f}s"),
                map_blocks=map_blocks or serial_map,
            )
        panel = read_snapshots(Path(tmp) / "features")
    cutoff = pd.Timestamp(summary["cutoffs"][-1]).tz_localize("UTC")
    curve = model.predict_curve(panel)
    specs = feature_specs()
    say(f"scored {len(panel):,} accounts at {cutoff.date()}")
    accounts = coerce_columns("accounts", TableFiles(data).read("accounts", ["account_id", "name", "csm_owner"]))
    owners = accounts.set_index("account_id")["csm_owner"].replace("", np.nan).dropna()
    names = accounts.set_index("account_id")["name"]
    now = cutoff.to_pydatetime()
    inputs: dict = {}
    top = reason_table(model, panel, curve, specs)
    position = pd.Series(np.arange(len(panel)), index=panel.index)
    decisions, queue = apply_policy(
        panel,
        curve,
        policy,
        now,
        model_version=str(version),
        owners=owners,
        names=names,
        reasons=lambda rows: [top[i]["raising"] for i in position[rows.index]],
        inputs=inputs,
    )
    scores = panel[["account_id", "cutoff"]].copy()
    scores[list(CURVE_COLUMNS)] = curve
    bands = {d.account_id: d.band for d in decisions}
    scores["tier"] = pd.Series(bands, dtype="str").reindex(scores["account_id"]).fillna("none").to_numpy()
    for k in range(TOP_REASONS):
        scores[f"reason_{k + 1}"] = [r["raising"][k]["sentence"] if len(r["raising"]) > k else None for r in top]
        scores[f"reason_{k + 1}_points"] = [r["raising"][k]["points"] if len(r["raising"]) > k else np.nan for r in top]
    scores["context"] = [
        "; ".join(f"{c['sentence']} ({c['points']:+.1f} points)" for c in r["context"]) or None for r in top
    ]
    scores["base_rate_90d"] = [r["base_rate"] for r in top]
    escalated = [d for d in decisions if d.escalate]
    held_out = [d for d in decisions if d.held_out]
    packages = _handoffs(escalated, inputs, data, cutoff) if escalated else {}
    recorded = (
        _record(escalated, held_out, packages, settings, policy, now, say)
        if escalated or held_out
        else {"recorded": 0, "opened": 0, "updated": 0}
    )
    # the queue is what CS works from: a held-out account on it would be worked, and the holdout lost
    queue = queue[~queue["held_out"].astype(bool)]
    with staged_output(Path(out)) as stage:
        write_parquet(scores, stage / "scores.parquet")
        lookup = panel.drop(columns=[c for c in panel.columns if c.startswith("churned_within_")])
        lookup = lookup.assign(account_name=lookup["account_id"].map(names), csm_owner=lookup["account_id"].map(owners))
        write_parquet(lookup, stage / "features.parquet")  # what the API looks accounts up in
        write_parquet(queue, stage / "queue.parquet")
        queue.to_csv(stage / "queue.csv", index=False)
        result = {
            "data": str(Path(data).resolve()),  # read back by the API, which runs from another folder
            "out": str(out),
            "as_of": str(cutoff.date()),
            "model": uri,
            "model_version": version,
            "policy_version": policy.version,
            "accounts": len(panel),
            "escalations": len(escalated),
            "held_out": len(held_out),
            "bands": {b: int((scores["tier"] == b).sum()) for b in BANDS[::-1]},
            "mean_risk": {f"{h}d": round(float(curve[:, k].mean()), 4) for k, h in enumerate(HORIZONS)},
            **recorded,
            "seconds": round(time.perf_counter() - started, 1),
        }
        write_json(result, stage / "score_summary.json")
        if packages:
            (stage / "handoffs").mkdir()
            for account, package in packages.items():
                write_json(
                    package.form | {"summary": package.summary, "warm_handoff": package.warm_handoff},
                    stage / "handoffs" / f"{account}.json",
                )
                (stage / "handoffs" / f"{account}.md").write_text(package.markdown)
    return result


def _handoffs(decisions: list, inputs: dict, data: Path, cutoff: pd.Timestamp) -> dict:
    """A handoff package per escalated account from its latest ticket before the cutoff (only
    messages sent before the cutoff: the package knows what the decision knew)."""
    from core.contracts import TableFiles, coerce_columns
    from escalation.handoff import build_handoff

    files = TableFiles(data)  # validated by the feature pass of this run: only the times need reading
    accounts = np.array([d.account_id for d in decisions], dtype=object)
    tickets = files.read_where("tickets", "account_id", accounts)
    if tickets is not None:
        tickets = coerce_columns("tickets", tickets)
    latest: dict = {}
    if tickets is not None and len(tickets):
        before = tickets[tickets["created_at"] < cutoff].sort_values("created_at")
        latest = (
            before.groupby("account_id")
            .tail(1)
            .set_index("account_id")[["ticket_id", "category", "priority"]]
            .to_dict("index")
        )
    ids = np.array([t["ticket_id"] for t in latest.values()], dtype=object)
    messages = None
    if len(ids) and files.path("ticket_messages") is not None:
        messages = coerce_columns("ticket_messages", files.read_where("ticket_messages", "ticket_id", ids))
        messages = messages[messages["sent_at"] < cutoff]
    out = {}
    for decision in decisions:
        facts, risk, signals = inputs[decision.account_id]
        ticket = latest.get(decision.account_id)
        own = (
            messages[messages["ticket_id"] == ticket["ticket_id"]].sort_values("sent_at")
            if ticket and messages is not None
            else pd.DataFrame(columns=["sent_at", "author", "body"])
        )
        if ticket:
            signals = signals.__class__(
                **{
                    **signals.__dict__,
                    "ticket_id": ticket["ticket_id"],
                    "category": ticket["category"],
                    "priority": ticket["priority"],
                }
            )
        out[decision.account_id] = build_handoff(
            decision, facts, risk, signals, own[["sent_at", "author", "body"]], cutoff.to_pydatetime()
        )
    return out


def _record(decisions: list, held_out: list, packages: dict, settings: Settings, policy, now, say) -> dict:
    """Escalations into the operational store (deduplicated within the cooldown) with their
    handoff packages; alerts are queued in the outbox and sent by `churn alerts flush`. Held-out
    decisions are stored as audit rows: the held-out comparison reads them there."""
    from escalation.store import Store

    with Store(settings.store_url, policy) as store:
        actions = [
            store.record(d, packages[d.account_id].to_dict() if d.account_id in packages else None, now).action
            for d in decisions
        ]
        if held_out:
            store.record_all([(d, None, now) for d in held_out])
            say(
                f"store: {len(held_out)} eligible escalations held out (policy holdout share {policy.holdout.share:.0%}), not sent"
            )
    created, updated = actions.count("created"), actions.count("merged") + actions.count("raised")
    say(f"store: {created} escalations opened, {updated} merged into open ones (cooldown {policy.cooldown_hours} h)")
    return {"recorded": created + updated, "opened": created, "updated": updated, "store": settings.store_url}
