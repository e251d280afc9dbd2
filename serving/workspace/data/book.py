"""The CS lead's book view: accounts and ARR at risk (expected churners = sum of p, expected ARR lost =
sum of p x ARR) by horizon, segment and owner with filters, the accounts with the most ARR at risk;
with the escalation funnel, outcomes, ratings and model health of evaluation.py."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import InputError
from core.vocabulary import BANDS, HORIZONS
from serving.workspace import charts
from serving.workspace.data.evaluation import evaluation_view, health
from serving.workspace.data.history import ModelView
from serving.workspace.format import money, percent

if TYPE_CHECKING:
    from serving.workspace.data import WorkspaceData

#: accounts listed on the book view
TOP_ACCOUNTS = 20
#: owners drawn on the book's chart (the largest losses)
CHARTED_OWNERS = 12


def book_page(data: WorkspaceData, segment: str | None, owner: str | None, horizon: Any) -> dict:
    """Everything the book view shows for the accounts `segment` and `owner` keep, at `horizon`."""
    try:
        horizon = int(horizon)
    except (TypeError, ValueError):
        raise InputError(f"horizon {horizon!r}: expected one of {list(HORIZONS)} (days)") from None
    if horizon not in HORIZONS:
        raise InputError(f"horizon {horizon}: expected one of {list(HORIZONS)} (days)")
    segment = str(segment).strip() or None if segment is not None else None
    owner = str(owner).strip() or None if owner is not None else None
    notes = list(data.notes)
    mask = _filter(data, segment, owner, notes)
    view = data.model_view()
    k = HORIZONS.index(horizon)
    P, arr = view.curves[mask], data.arr[mask]
    expected, lost = P.sum(axis=0), (P * arr[:, None]).sum(axis=0)
    total_arr = float(arr.sum())
    by_horizon = [
        {
            "horizon": h,
            "expected_churners": float(expected[j]),
            "expected_churners_text": f"{expected[j]:,.1f}",
            "expected_arr_lost": float(lost[j]),
            "expected_arr_lost_text": money(float(lost[j])),
            "share_text": percent(float(lost[j]) / total_arr, 1) if total_arr else "-",
        }
        for j, h in enumerate(HORIZONS)
    ]
    by_segment = _groups(data, mask, view, k, data.segment_codes, data.segment_names, "segment")
    by_owner = _groups(data, mask, view, k, data.owner_codes, data.owner_names, "owner")
    return {
        "as_of": data.as_of,
        "model_version": view.version,
        "horizon": horizon,
        "horizons": list(HORIZONS),
        "filters": {"segment": segment, "owner": owner, "horizon": horizon},
        "segments": data.segments(),
        "owners": data.owners(),
        "totals": {
            "accounts": int(mask.sum()),
            "arr": total_arr,
            "arr_text": money(total_arr),
            **{key: by_horizon[k][key] for key in by_horizon[k] if key != "horizon"},
        },
        "by_horizon": by_horizon,
        "by_segment": by_segment,
        "by_owner": by_owner,
        "bands": {b: int((view.tiers[mask] == b).sum()) for b in BANDS[::-1]},
        "bands_from": view.tiers_from,
        "top_accounts": _top_accounts(data, mask, view, k),
        **evaluation_view(data.store_views, mask, view, notes),
        "health": health(data.runtime, data.monitoring, data.scores_dir),
        "charts": {
            "by_horizon": charts.bars(
                [
                    (f"within {r['horizon']} days", r["expected_arr_lost"], r["expected_arr_lost_text"])
                    for r in by_horizon
                ],
                "ARR expected to churn, by horizon",
                prefix="bars-horizon",
            ),
            "by_segment": charts.bars(
                [(r["segment"], r["expected_arr_lost"], r["expected_arr_lost_text"]) for r in by_segment],
                f"ARR expected to churn within {horizon} days, by segment",
                prefix="bars-segment",
            ),
            "by_owner": charts.bars(
                [(r["owner"], r["expected_arr_lost"], r["expected_arr_lost_text"]) for r in by_owner[:CHARTED_OWNERS]],
                f"ARR expected to churn within {horizon} days, by owner (the {CHARTED_OWNERS} largest)",
                prefix="bars-owner",
            ),
        },
        "notes": list(dict.fromkeys(notes)),
    }


def _filter(data: WorkspaceData, segment: str | None, owner: str | None, notes: list[str]) -> np.ndarray:
    """The accounts a segment and an owner keep; a value no account has keeps none, and the page
    says which values there are."""
    mask = np.ones(data.n, dtype=bool)
    for value, names, codes, flag in (
        (segment, data.segment_names, data.segment_codes, "segment"),
        (owner, data.owner_names, data.owner_codes, "owner"),
    ):
        if value is None:
            continue
        if value not in names:
            notes.append(f"{flag} {value!r}: no account in the snapshot has it; expected one of {', '.join(names)}.")
            return np.zeros(data.n, dtype=bool)
        mask &= codes == names.index(value)
    return mask


def _groups(
    data: WorkspaceData, mask: np.ndarray, view: ModelView, k: int, codes: np.ndarray, names: list[str], key: str
) -> list[dict]:
    """Accounts, ARR, expected churners and ARR lost at horizon k per code, largest loss first."""
    c = codes[mask]
    size = len(names)
    p = view.curves[mask, k]
    arr = data.arr[mask]
    accounts = np.bincount(c, minlength=size)
    arr_sum = np.bincount(c, weights=arr, minlength=size)
    churners = np.bincount(c, weights=p, minlength=size)
    lost = np.bincount(c, weights=p * arr, minlength=size)
    flagged = np.bincount(c, weights=(view.tiers[mask] != "none").astype(float), minlength=size)
    order = np.argsort(-lost, kind="stable")
    return [
        {
            key: names[j],
            "accounts": int(accounts[j]),
            "arr": float(arr_sum[j]),
            "arr_text": money(float(arr_sum[j])),
            "expected_churners": float(churners[j]),
            "expected_churners_text": f"{churners[j]:,.1f}",
            "expected_arr_lost": float(lost[j]),
            "expected_arr_lost_text": money(float(lost[j])),
            "flagged": int(flagged[j]),
        }
        for j in order
        if accounts[j]
    ]


def _top_accounts(data: WorkspaceData, mask: np.ndarray, view: ModelView, k: int) -> list[dict]:
    """The accounts with the most ARR expected to churn at the horizon, with their first reason."""
    where = np.flatnonzero(mask)
    lost = view.curves[where, k] * data.arr[where]
    if len(where) > TOP_ACCOUNTS:
        pick = np.argpartition(-lost, TOP_ACCOUNTS)[:TOP_ACCOUNTS]
        where, lost = where[pick], lost[pick]
    order = np.argsort(-lost, kind="stable")
    answers = data.runtime.state.answers
    out = []
    for i, value in zip(where[order], lost[order], strict=True):
        score = answers[int(i)][0] if int(i) < len(answers) else None
        reason = score.top_reasons[0] if score is not None and score.top_reasons else None
        out.append(
            {
                **data.row(int(i), view),
                "p": float(view.curves[i, k]),
                "p_text": percent(float(view.curves[i, k])),
                "expected_arr_lost_text": money(float(value)),
                "reason": None if reason is None else f"{reason.sentence} ({reason.effect})",
            }
        )
    return out
