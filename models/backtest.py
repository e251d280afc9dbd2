"""Rolling-origin backtest by cutoff, planned to fit the history the panel has.

Each fold tests one cutoff. Its training rows are the snapshots before it, with every label
re-censored at the test cutoff (a label whose horizon ends after the test cutoff is unknown at
that time), so no training outcome overlaps the test period: the gap between training labels and
the test cutoff is at least the horizon of each label used.

Which cutoffs are tested is planned per horizon (`plan_backtest`). Horizon h is tested at the
latest `folds` cutoffs where
- its own outcome is known (cutoff + h at or before the end of the data), and
- the training rows, re-censored there, hold at least `min_train_cutoffs` cutoffs whose h-day
  outcome is known (cutoff + h at or before the test cutoff). Without them the model has never
  seen an h-day outcome and the baselines cannot be fitted at h: the figure would measure an
  extrapolation, not the model that `churn train` fits on the whole panel.
`min_train_cutoffs` is max(2, ceil(min_train_days / cadence)), so the requirement is the same
stretch of history at any `--every`. The folds are the union of the horizons' test cutoffs: each
model is fitted once per fold and scored, per horizon, on the folds planned for that horizon, so
`folds` means the same number of test cutoffs for every horizon that has them (fewer, and said,
when the history is short). A horizon without any such cutoff is reported as not evaluated, with
the days of data it lacks.

Besides the latest cutoffs, every horizon is also tested at the panel's calendar cutoffs where
they are eligible (the rule above): `churn features` adds to its regular calendar the latest month
end and the day after the deepest week in which the whole base dipped (a holiday week;
features/panel.py `calendar_cutoffs`, listed in panel_summary.json), so the figures include the
days when a calendar effect, not churn, moves usage. Each adds one fit, unless it is among the
latest cutoffs already; its training rows are re-censored at it like any fold's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd

from core.errors import InputError
from core.mapping import Mapper, serial_map
from core.vocabulary import HORIZONS, LABELS
from models.curve import BoosterTrainer, CurveParams, fit_curve
from models.metrics import score_metrics

#: The least history a fold trains on, in days of cutoffs whose outcome is known at the test cutoff.
MIN_TRAIN_DAYS = 28
#: fit_curve holds the latest training cutoff out for early stopping and calibration: it needs two.
MIN_TRAIN_CUTOFFS = 2
#: The cadence assumed for a panel of one cutoff (the default of `churn features --every`).
DEFAULT_STEP_DAYS = 30
#: The cadence suggested when a shorter `--every` would make a backtest possible.
WEEKLY = 7


def censor_at(panel: pd.DataFrame, moment: pd.Timestamp) -> pd.DataFrame:
    """Labels as they were known at `moment`: null where cutoff + horizon > moment."""
    out = panel.copy()
    for h, label in zip(HORIZONS, LABELS, strict=True):
        late = (out["cutoff"] + pd.Timedelta(days=h)) > moment
        out[label] = out[label].mask(late.to_numpy())
    return out


# -- the plan -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NotEvaluated:
    """A horizon the backtest cannot test, and why."""

    horizon_days: int
    reason: str
    #: days of data the horizon lacks (None when more history is not what is missing)
    needs_days: int | None


@dataclass(frozen=True)
class BacktestPlan:
    """Which cutoffs test which horizon, and what the history cannot support."""

    folds: int
    step_days: int
    min_train_days: int
    min_train_cutoffs: int
    data_end: pd.Timestamp
    #: by horizon (days), the test cutoffs planned for it; only horizons that can be evaluated
    test_cutoffs: dict[int, tuple[pd.Timestamp, ...]]
    not_evaluated: tuple[NotEvaluated, ...]
    #: what the user should know: fewer folds than asked, horizons left out
    notes: tuple[str, ...]
    #: "the panel covers ... (N days of cutoffs, n cutoffs every s days) ..."
    history: str
    #: the sentence explaining why nothing can be evaluated (None when something can)
    shortfall: str | None
    #: the calendar cutoffs tested (a month end, a base-wide dip), with why each was added
    calendar: dict[pd.Timestamp, str] = field(default_factory=dict)

    @property
    def fold_cutoffs(self) -> list[pd.Timestamp]:
        """Every cutoff a fold tests, in time order."""
        return sorted({c for cutoffs in self.test_cutoffs.values() for c in cutoffs})

    def horizons_at(self, cutoff: pd.Timestamp) -> tuple[int, ...]:
        """The horizons a fold at `cutoff` is scored on."""
        return tuple(h for h, cutoffs in self.test_cutoffs.items() if cutoff in cutoffs)

    def to_dict(self) -> dict:
        """JSON-ready: dates as ISO strings, horizons as keys."""
        return {
            "folds": self.folds,
            "step_days": self.step_days,
            "min_train_days": self.min_train_days,
            "min_train_cutoffs": self.min_train_cutoffs,
            "data_end": self.data_end.isoformat(),
            "history": self.history,
            "test_cutoffs": {str(h): [str(c.date()) for c in cutoffs] for h, cutoffs in self.test_cutoffs.items()},
            "calendar_cutoffs": {str(c.date()): why for c, why in self.calendar.items()},
            "not_evaluated": [asdict(n) for n in self.not_evaluated],
            "notes": list(self.notes),
        }

    def lines(self) -> list[str]:
        """The plan for people: one line for the folds, one per horizon left out, the notes."""
        tested = ", ".join(f"{h} days at {len(c)}" for h, c in self.test_cutoffs.items())
        head = (
            [
                (
                    f"backtest: {len(self.fold_cutoffs)} test cutoffs ({tested}); each fold trains on at least "
                    f"{self.min_train_cutoffs} cutoffs whose outcome at the tested horizon is known at the test cutoff"
                )
            ]
            if self.test_cutoffs
            else []
        )
        calendar = [
            f"also tested at {c.date()} ({', '.join(str(h) for h in self.horizons_at(c))} days): {why}"
            for c, why in self.calendar.items()
        ]
        return (
            head
            + calendar
            + [f"{n.horizon_days} days not evaluated: {n.reason}" for n in self.not_evaluated]
            + list(self.notes)
        )


def cadence_days(cutoffs: pd.DatetimeIndex) -> int:
    """Days between consecutive cutoffs (the median gap), or the default for a single cutoff."""
    if len(cutoffs) < 2:
        return DEFAULT_STEP_DAYS
    return max(1, round((cutoffs[1:] - cutoffs[:-1]).median() / pd.Timedelta(days=1)))


def min_train_cutoffs(step_days: int, min_train_days: int = MIN_TRAIN_DAYS) -> int:
    """Training cutoffs a fold needs at this cadence: enough to cover `min_train_days`, and at least two."""
    return max(MIN_TRAIN_CUTOFFS, math.ceil(min_train_days / step_days))


def first_test_offset(step_days: int, train_cutoffs: int, horizon: int) -> int:
    """Days from the first cutoff to the first cutoff of a regular grid that can test `horizon`:
    the last of `train_cutoffs` training cutoffs plus the horizon (its outcome must be known there)."""
    return math.ceil(((train_cutoffs - 1) * step_days + horizon) / step_days) * step_days


def history_needed(step_days: int, min_train_days: int, horizon: int) -> int:
    """Days from the first cutoff to the end of the data that testing `horizon` needs at this cadence."""
    return first_test_offset(step_days, min_train_cutoffs(step_days, min_train_days), horizon) + horizon


def infer_data_end(panel: pd.DataFrame) -> pd.Timestamp:
    """The end of the data as the labels show it, when no panel summary says: the latest
    cutoff + horizon whose outcome is known (a lower bound), else the last cutoff."""
    ends = [
        panel.loc[panel[label].notna(), "cutoff"].max() + pd.Timedelta(days=h)
        for h, label in zip(HORIZONS, LABELS, strict=True)
        if panel[label].notna().any()
    ]
    return pd.Timestamp(max(ends)) if ends else pd.Timestamp(panel["cutoff"].max())


def eligible_test_cutoffs(
    panel: pd.DataFrame, cutoffs: pd.DatetimeIndex, horizon: int, label: str, train_cutoffs: int
) -> list[pd.Timestamp]:
    """Cutoffs whose `horizon` outcome is known, preceded by `train_cutoffs` cutoffs whose outcome
    at that horizon is known at them (censor_at's rule: cutoff + horizon <= test cutoff)."""
    labelled = pd.DatetimeIndex(panel.loc[panel[label].notna(), "cutoff"].unique()).sort_values()
    outcome_known_by = cutoffs + pd.Timedelta(days=horizon)
    return [pd.Timestamp(t) for t in labelled if int((outcome_known_by <= t).sum()) >= train_cutoffs]


def describe_history(cutoffs: pd.DatetimeIndex, step_days: int, data_end: pd.Timestamp) -> str:
    """'the panel covers A to B (N days of cutoffs, n cutoffs every s days) and its data end on E'."""
    count = f"{len(cutoffs)} cutoffs every {step_days} days" if len(cutoffs) > 1 else "1 cutoff"
    return (
        f"the panel covers {cutoffs[0].date()} to {cutoffs[-1].date()} ({(cutoffs[-1] - cutoffs[0]).days} days of cutoffs, {count}) "
        f"and its data end on {data_end.date()}"
    )


def _not_evaluated(
    horizon: int, cutoffs: pd.DatetimeIndex, step_days: int, train_cutoffs: int, data_end: pd.Timestamp
) -> NotEvaluated:
    """Why `horizon` has no test cutoff: the days of data it lacks, or a panel that stops early."""
    first_test = cutoffs[0] + pd.Timedelta(days=first_test_offset(step_days, train_cutoffs, horizon))
    lacking = (first_test + pd.Timedelta(days=horizon) - data_end).days
    if lacking > 0:
        return NotEvaluated(
            horizon,
            f"not enough history: needs {lacking} more days (a first test cutoff on {first_test.date()}, after "
            f"{train_cutoffs} training cutoffs whose {horizon}-day outcome is known there, and {horizon} days "
            f"after it to see its own outcome; the data end on {data_end.date()})",
            lacking,
        )
    if first_test > cutoffs[-1]:
        return NotEvaluated(
            horizon,
            f"the panel's last cutoff {cutoffs[-1].date()} is before the first cutoff that could test it "
            f"({first_test.date()}); rebuild the panel with a later --end (the data end on {data_end.date()})",
            None,
        )
    return NotEvaluated(
        horizon,
        f"no snapshot from {first_test.date()} to {(data_end - pd.Timedelta(days=horizon)).date()} has a known "
        f"{horizon}-day outcome",
        None,
    )


def _advice(
    cutoffs: pd.DatetimeIndex,
    step_days: int,
    min_train_days: int,
    data_end: pd.Timestamp,
    data_start: pd.Timestamp | None,
    lacking: int,
) -> str:
    """What would make a backtest possible, checked rather than guessed."""
    shortest = HORIZONS[0]
    options = []
    if data_start is not None and cutoffs[0] - data_start > pd.Timedelta(days=1):
        # `churn features` accepts a first cutoff the day after the data begin
        earliest = data_start + pd.Timedelta(days=1)
        if (data_end - earliest).days >= history_needed(step_days, min_train_days, shortest):
            options.append(f"rebuild the panel with an earlier --start (the data begin on {data_start.date()})")
    if step_days > WEEKLY and (data_end - cutoffs[0]).days >= history_needed(WEEKLY, min_train_days, shortest):
        options.append(f"rebuild the panel with --every {WEEKLY}d")
    options.append(f"add at least {lacking} more days of history")
    advice = "; or ".join(options)
    return advice[0].upper() + advice[1:] + "."


def _shortfall(
    history: str,
    cutoffs: pd.DatetimeIndex,
    step_days: int,
    min_train_days: int,
    data_end: pd.Timestamp,
    data_start: pd.Timestamp | None,
    shortest: NotEvaluated,
) -> str:
    """Why nothing can be evaluated, in one sentence: the history there is against the history the
    shortest horizon needs (or what else stops it), and what would help."""
    if shortest.needs_days is None:
        return f"{history}; no horizon can be backtested: {shortest.horizon_days} days: {shortest.reason}"
    h = shortest.horizon_days
    needed = history_needed(step_days, min_train_days, h)
    return (
        f"{history}; a backtest needs known {h}-day outcomes at a test cutoff after at least "
        f"{min_train_cutoffs(step_days, min_train_days)} training cutoffs "
        f"whose {h}-day outcomes are known there: at least {needed} days from the first cutoff to the end of the data, "
        f"{shortest.needs_days} more than it has. {_advice(cutoffs, step_days, min_train_days, data_end, data_start, shortest.needs_days)}"
    )


def _utc(day: str | pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(day)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp


def plan_backtest(
    panel: pd.DataFrame,
    folds: int,
    *,
    min_train_days: int = MIN_TRAIN_DAYS,
    data_end: pd.Timestamp | None = None,
    data_start: pd.Timestamp | None = None,
    calendar: Mapping[str, str] | None = None,
) -> BacktestPlan:
    """The test cutoffs of each horizon (module docstring), what cannot be evaluated and why.

    `data_end` is the end of the data (panel_summary.json); without it, the labels show a lower
    bound. `data_start` only makes the advice more precise. `calendar`: the panel's calendar
    cutoffs (date -> why it was added, panel_summary.json), tested where eligible."""
    cutoffs = pd.DatetimeIndex(panel["cutoff"].unique()).sort_values()
    if len(cutoffs) == 0:
        raise InputError("the snapshot panel has no rows: there is nothing to backtest")
    step = cadence_days(cutoffs)
    train_cutoffs = min_train_cutoffs(step, min_train_days)
    end = pd.Timestamp(data_end) if data_end is not None else infer_data_end(panel)
    extra = {_utc(day): why for day, why in (calendar or {}).items()}
    tested: dict[int, tuple[pd.Timestamp, ...]] = {}
    skipped: list[NotEvaluated] = []
    notes: list[str] = []
    for h, label in zip(HORIZONS, LABELS, strict=True):
        eligible = eligible_test_cutoffs(panel, cutoffs, h, label, train_cutoffs)
        if not eligible:
            skipped.append(_not_evaluated(h, cutoffs, step, train_cutoffs, end))
            continue
        tested[h] = tuple(sorted(set(eligible[-folds:]) | (set(extra) & set(eligible))))
        if len(eligible) < folds:
            notes.append(
                f"{h} days: {len(eligible)} fold{'s' if len(eligible) > 1 else ''} instead of the {folds} asked (the history holds "
                f"{len(eligible)} cutoff{'s' if len(eligible) > 1 else ''} with a known {h}-day outcome after {train_cutoffs} "
                "training cutoffs)"
            )
    history = describe_history(cutoffs, step, end)
    shortfall = None
    if not tested:
        shortfall = _shortfall(history, cutoffs, step, min_train_days, end, data_start, skipped[0])
    calendar_tested = {c: why for c, why in sorted(extra.items()) if any(c in cutoffs for cutoffs in tested.values())}
    return BacktestPlan(
        folds,
        step,
        min_train_days,
        train_cutoffs,
        end,
        tested,
        tuple(skipped),
        tuple(notes),
        history,
        shortfall,
        calendar_tested,
    )


# -- the folds ------------------------------------------------------------------------------------


class FoldBaseline(Protocol):
    """A baseline scored next to the model (models/baselines.py): fitted on each fold's training rows."""

    def fit(self, panel: pd.DataFrame) -> FoldBaseline: ...

    def predict_curve(self, panel: pd.DataFrame) -> np.ndarray: ...


#: the model name the uncalibrated curve is scored under when a fold job asks for it (`FoldJob.raw`)
RAW_MODEL = "lightgbm_raw"


@dataclass
class FoldJob:
    """One rolling-origin fold: everything it needs, so it can run as a task in another process."""

    index: int
    test_cutoff: pd.Timestamp
    panel: pd.DataFrame
    features: list[str]
    params: CurveParams | None
    baselines: dict[str, Callable[[], FoldBaseline]] | None
    oracle: Callable[[pd.DataFrame], np.ndarray] | None
    trainer: BoosterTrainer | None
    #: the horizons this fold is scored on (the plan's)
    horizons: tuple[int, ...] = HORIZONS
    #: also score the curve uncalibrated, as model RAW_MODEL (what calibration changes: benchmarks/quality.py)
    raw: bool = False


def run_fold(job: FoldJob) -> dict:
    """Fit on the snapshots before the fold's cutoff (labels censored there), predict at it.
    Outcomes of horizons the fold is not planned for are left null in its predictions."""
    train = censor_at(job.panel[job.panel["cutoff"] < job.test_cutoff], job.test_cutoff)
    test = job.panel[job.panel["cutoff"] == job.test_cutoff].reset_index(drop=True)
    model = fit_curve(train, job.features, job.params, job.trainer)
    curves = {"lightgbm": model.predict_curve(test)}
    if job.raw:
        curves[RAW_MODEL] = model.raw_curve(test)
    # A baseline fits one model per horizon: those after the fold's longest are not scored here, so
    # their labels are hidden from it and it fits none (its curve is NaN there, after a running maximum).
    unscored = {label: np.nan for h, label in zip(HORIZONS, LABELS, strict=True) if h > max(job.horizons)}
    for name, make in (job.baselines or {}).items():
        curves[name] = make().fit(train.assign(**unscored)).predict_curve(test)
    if job.oracle is not None:
        curves["oracle"] = job.oracle(test)
    outcomes = test[["account_id", "cutoff", "arr_current", *LABELS]].copy()
    for h, label in zip(HORIZONS, LABELS, strict=True):
        if h not in job.horizons:
            outcomes[label] = outcomes[label].mask(np.ones(len(outcomes), dtype=bool))
    preds = []
    for name, curve in curves.items():
        frame = outcomes.copy()
        frame[[f"p_{h}d" for h in HORIZONS]] = curve
        preds.append(frame.assign(model=name))
    tested = ", ".join(str(h) for h in job.horizons)
    return {
        "preds": preds,
        "line": f"fold {job.test_cutoff.date()} ({tested} days): {len(train):,} training rows, {len(test):,} test rows",
        "kept": model.info["kept"],
    }


def score_backtest(
    pooled: pd.DataFrame, plan: BacktestPlan, *, budget: float, churned_at: pd.Series | None
) -> pd.DataFrame:
    """One row per model and evaluated horizon: the horizon's folds, then score_metrics on the rows
    whose outcome is known (pooled holds a horizon's outcome only at the folds planned for it)."""
    rows = []
    for name, group in pooled.groupby("model", sort=False):
        for h, label in zip(HORIZONS, LABELS, strict=True):
            if h not in plan.test_cutoffs:
                continue
            known = group[label].notna().to_numpy()
            frame = pd.DataFrame(
                {
                    "account_id": group["account_id"],
                    "cutoff": group["cutoff"],
                    "y": group[label],
                    "score": group[f"p_{h}d"],
                    "arr": group["arr_current"],
                }
            )[known]
            cutoffs = plan.test_cutoffs[h]
            metrics = score_metrics(frame.assign(y=frame["y"].astype(int)), budget=budget, churned_at=churned_at)
            rows.append(
                {
                    "model": name,
                    "horizon_days": h,
                    "folds": len(cutoffs),
                    "first_test_cutoff": str(cutoffs[0].date()),
                    "last_test_cutoff": str(cutoffs[-1].date()),
                    **metrics,
                }
            )
    return pd.DataFrame(rows)


def run_backtest(
    panel: pd.DataFrame,
    features: list[str],
    *,
    folds: int = 4,
    params: CurveParams | None = None,
    baselines: dict[str, Callable[[], FoldBaseline]] | None = None,
    oracle: Callable[[pd.DataFrame], np.ndarray] | None = None,
    budget: float = 0.05,
    churned_at: pd.Series | None = None,
    progress: Callable[[str], None] | None = None,
    trainer: BoosterTrainer | None = None,
    map_folds: Mapper | None = None,
    plan: BacktestPlan | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(metrics table: one row per model and evaluated horizon, pooled test predictions).

    `plan` (default: plan_backtest(panel, folds)) says which cutoffs test which horizon; a plan
    with nothing to evaluate raises InputError with its shortfall. `map_folds` runs the folds
    (default: here, in turn); the build-features mapper of the flows makes each fold a task of the
    flow's runner. With a `trainer` that distributes each fit itself (lightgbm.dask), the folds
    run here in turn."""
    plan = plan or plan_backtest(panel, folds)
    if plan.shortfall:
        raise InputError(plan.shortfall)
    jobs = [
        FoldJob(i, c, panel, features, params, baselines, oracle, trainer, plan.horizons_at(c))
        for i, c in enumerate(plan.fold_cutoffs)
    ]
    mapper = map_folds if map_folds is not None and trainer is None else serial_map
    preds = []
    for result in mapper(run_fold, jobs):
        preds.extend(result["preds"])
        if progress:
            progress(result["line"])
    pooled = pd.concat(preds, ignore_index=True)
    return score_backtest(pooled, plan, budget=budget, churned_at=churned_at), pooled
