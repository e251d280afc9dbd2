"""`churn escalations`, `churn follow-ups` and `churn policy suggest`: CS works an escalation to an
outcome from the shell, and sees which risk thresholds would have filled its capacity best.

Statuses, outcomes and transitions are checked by the store (core/vocabulary.py holds their one
list), which names the escalation and what was expected. The --json documents are made by
serving/lifecycle.py, which the API's lifecycle endpoints answer with too: the command line and the
API give the same answers. Nothing runs at import time: the store (SQLAlchemy) is imported by each
command, on the database named by CHURN_STORE_URL, as `churn alerts flush` does, and no command
starts Prefect.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from core.errors import InputError
from core.vocabulary import STATUSES
from pipelines.console import emit, err, json_option, path_option

#: the listing's columns in human output, in order
LIST_COLUMNS = ("id", "status", "band", "account_id", "reason", "queue", "owner", "respond_by", "follow_up_due")


def _by(help: str):
    """The --by option: who made a change, as the store records it."""
    return click.option("--by", "by", required=True, help=help)


@contextmanager
def _store() -> Iterator[Any]:
    """The operational store of the settings (CHURN_STORE_URL) under the deployment's policy, on the
    platform's clock (the last demo's for the demo's store: `serving.launch.use_clock`)."""
    from core.settings import load_settings
    from escalation.policy import load_policy
    from escalation.store import Store
    from serving.launch import use_clock

    settings = load_settings()
    use_clock(settings, say=err.print)
    with Store(settings.store_url, load_policy(settings.config_dir)) as store:
        yield store


def _line(row: dict) -> str:
    late = " OVERDUE" if row.get("overdue") else ""
    return "  ".join(f"{row.get(key)}" for key in LIST_COLUMNS) + late


def _changed(action: str, changed: dict, as_json: bool) -> None:
    row = changed["escalation"]
    outcome = f" ({row['outcome']})" if row.get("outcome") else ""
    emit(changed, as_json, f"escalation {row['id']} {action}: now {row['status']}{outcome}")


def _status(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """--status checked here, so that the one-line error names the flag (the store names its field)."""
    if value is not None and value not in STATUSES:
        raise InputError(f"--status {value!r}: expected one of {list(STATUSES)}")
    return value


def _iso_time(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """--due-by checked as the store reads it, so that the one-line error names the flag."""
    from serving.lifecycle import read_time

    read_time(value, "--due-by")
    return value


@click.group("escalations")
def escalations() -> None:
    """The escalation queue: list, show, acknowledge and resolve escalations (open -> acknowledged -> resolved or expired)."""


@escalations.command("list")
@click.option("--queue", help="Only this queue (e.g. security-response).")
@click.option("--owner", help="Only escalations owned by this person.")
@click.option(
    "--status",
    callback=_status,
    help=f"Only this status: {', '.join(STATUSES)} [default: open and acknowledged].",
)
@click.option(
    "--overdue", is_flag=True, help="Only open escalations whose response window has passed without acknowledgement."
)
@json_option
def escalations_list(queue: str | None, owner: str | None, status: str | None, overdue: bool, as_json: bool) -> None:
    """List escalations, most severe first, with their next follow-up and whether they are overdue."""
    from serving import lifecycle

    with _store() as store:
        listed = lifecycle.list_escalations(store, queue=queue, owner=owner, status=status, overdue=overdue)
    rows = listed["escalations"]
    human = "\n".join(["  ".join(LIST_COLUMNS), *map(_line, rows)]) if rows else "no escalations match"
    emit(listed, as_json, human)


@escalations.command("show")
@click.argument("escalation_id", type=int)
@json_option
def escalations_show(escalation_id: int, as_json: bool) -> None:
    """One escalation: its state, handoff package, follow-ups and audit trail."""
    from serving import lifecycle

    with _store() as store:
        shown = lifecycle.show_escalation(store, escalation_id)
    detail = shown["escalation"]
    trail = [
        f"  {c['at']}  {c['from_status'] or '-'} -> {c['to_status']}  by {c['actor'] or '?'}"
        + (f"  outcome {c['outcome']}" if c["outcome"] else "")
        + (f"  note: {c['note']}" if c["note"] else "")
        for c in detail["history"]
    ]
    follow = [
        f"  due {f['due_at']}  " + (f"done {f['done_at']} by {f['done_by'] or '?'}" if f["done_at"] else "pending")
        for f in detail["follow_ups"]
    ]
    pending = [f["due_at"] for f in detail["follow_ups"] if not f["done_at"]]
    summary = (detail.get("package") or {}).get("summary")
    human = "\n".join(
        [
            _line({**detail, "follow_up_due": min(pending) if pending else "-"}),
            "handoff:",
            f"  {summary}" if summary else "  none recorded",
            "history:",
            *trail,
            "follow-ups:",
            *(follow or ["  none"]),
        ]
    )
    emit(shown, as_json, human)


@escalations.command("ack")
@click.argument("escalation_id", type=int)
@click.option("--note", help="A sentence for the audit trail (optional).")
@_by("Who acknowledges it (recorded in the audit trail).")
@json_option
def escalations_ack(escalation_id: int, note: str | None, by: str, as_json: bool) -> None:
    """Acknowledge an open escalation: someone has it in hand, it is no longer overdue."""
    from serving import lifecycle

    with _store() as store:
        changed = lifecycle.acknowledge(store, escalation_id, by, note)
    _changed("acknowledged", changed, as_json)


@escalations.command("resolve")
@click.argument("escalation_id", type=int)
@click.option("--outcome", required=True, help="What CS found: saved, churned or not_at_risk.")
@click.option("--note", help="Why, in a sentence (recorded in the audit trail).")
@_by("Who resolves it (recorded in the audit trail).")
@json_option
def escalations_resolve(escalation_id: int, outcome: str, note: str | None, by: str, as_json: bool) -> None:
    """Resolve an open or acknowledged escalation with its outcome; closes its pending follow-ups."""
    from serving import lifecycle

    with _store() as store:
        changed = lifecycle.resolve(store, escalation_id, outcome, by, note)
    _changed("resolved", changed, as_json)


@click.group("follow-ups")
def follow_ups() -> None:
    """The follow-ups due within 24 hours of every handoff."""


@follow_ups.command("list")
@click.option("--due", is_flag=True, help="Only those due now or earlier.")
@click.option(
    "--due-by",
    "due_by",
    callback=_iso_time,
    help="Only those due at or before this time (ISO 8601, e.g. 2026-03-11T09:00:00Z).",
)
@json_option
def follow_ups_list(due: bool, due_by: str | None, as_json: bool) -> None:
    """Pending follow-ups of active escalations, oldest due first."""
    from core import clock
    from serving import lifecycle

    with _store() as store:
        listed = lifecycle.follow_ups(store, due_by=clock.now() if due and due_by is None else due_by)
    human = "\n".join(
        f"escalation {r['escalation_id']}  due {r['due_at']}  {r['account_id']}  owner {r['owner']}  queue {r['queue']}"
        for r in listed["follow_ups"]
    ) or ("no follow-ups due" if due or due_by else "no follow-ups pending")
    emit(listed, as_json, human)


@follow_ups.command("done")
@click.argument("escalation_id", type=int)
@_by("Who followed up (recorded with the follow-up).")
@json_option
def follow_ups_done(escalation_id: int, by: str, as_json: bool) -> None:
    """Mark the pending follow-up of escalation ESCALATION_ID done (the id `churn escalations list` shows)."""
    from serving import lifecycle

    with _store() as store:
        done = lifecycle.follow_up_done(store, escalation_id, by)
    emit(done, as_json, f"escalation {escalation_id}: {done['done']} follow-up(s) done by {by}")


@click.group("policy")
def policy_group() -> None:
    """The escalation policy (config/escalation.yaml) judged on past outcomes."""


@policy_group.command("suggest")
@click.option(
    "--capacity",
    type=int,
    required=True,
    help="Risk-threshold escalations CS can work per period (one cutoff of the panel, 30 days by default).",
)
@click.option(
    "--horizon",
    "horizons",
    type=click.Choice(["30", "60", "90", "180"]),
    multiple=True,
    help="Only these horizons' thresholds may move (repeatable) [default: every horizon in risk_thresholds].",
)
@path_option(
    "--features",
    "features_dir",
    default=None,
    help="Snapshot panel with later churn (output of `churn features`) [default: the one the model was trained on].",
)
@click.option(
    "--model", "model_uri", default=None, help="Model that scores the panel [default: CHURN_MODEL_URI, the champion]."
)
@path_option(
    "--out",
    default=None,
    help="Write the policy with the suggested thresholds to this YAML file (atomically; never the live config). Default: write nothing.",
)
@json_option
def policy_suggest(
    capacity: int,
    horizons: tuple[str, ...],
    features_dir: Path | None,
    model_uri: str | None,
    out: Path | None,
    as_json: bool,
) -> None:
    """Risk thresholds that would have filled a CS capacity with the most precise escalations.

    Printed as a diff against config/escalation.yaml; never applied.
    """
    from core.settings import load_settings
    from pipelines.outcomes import run_policy_suggest, suggest_human

    result = run_policy_suggest(
        settings=load_settings(),
        capacity=capacity,
        horizons=tuple(int(h) for h in horizons),
        features_dir=features_dir,
        model_uri=model_uri,
        out=out,
        progress=lambda line: err.print(f"  {line}"),
    )
    emit(result, as_json, suggest_human(result))


COMMANDS = (escalations, follow_ups, policy_group)
