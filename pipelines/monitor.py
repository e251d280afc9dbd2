"""Monitoring that speaks up: three monitors run after each daily scoring (and by `churn monitor`).

- feature drift: the population stability index (PSI) of the served model's most important
  features (mean |SHAP| on the 90-day risk), its training panel's last `reference_days` of
  cutoffs against today's snapshot;
- score distribution: the PSI of p_90d, and the shift of its mean, the model's scores of that
  reference against today's;
- calibration: for the latest past run whose horizon has matured (its outcomes are known by
  today's cutoff), the churns observed against the sum of the predicted probabilities, at every
  horizon; a breach needs a gap beyond both a binomial tolerance (so a small base does not
  false-alarm) and a relative one (so a huge base does not alarm on a trivial gap). Too few
  predicted churns, or no matured run yet, is "not enough data", never a breach.

The computations (`feature_drift`, `score_distribution`, `calibration`) are pure: frames and
thresholds in, a `MonitorResult` out. `run_monitors` gathers their inputs (the score run's output,
the model's training panel named in the registry, the score history in `<scores>/history/`, the
churn table), writes `monitoring.json` beside `score_summary.json` and queues one alert per breach
in the outbox (`Store.enqueue_notice`, topic "monitor", deduplicated on the monitor and the day:
at most one alert per monitor per day, however often it runs). Thresholds and destinations are
`monitoring:` in config/escalation.yaml.

The PSIs are models/drift.py's. This lives in pipelines/ rather than models/ because the alerts go
through the store, above models/ in the import order.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import Config, load_config
from core.errors import InputError
from core.io import write_json, write_parquet
from core.settings import Settings
from core.vocabulary import CURVE_COLUMNS, HORIZONS
from models.drift import category_psi, psi

MONITORS = ("feature_drift", "score_distribution", "calibration")
#: each monitor as a message names it ("feature drift")
LABELS = {m: m.replace("_", " ") for m in MONITORS}
STATES = ("ok", "breach", "not_enough_data", "unavailable")
TOPIC = "monitor"
HISTORY = "history"
#: the horizon the score distribution is watched on: the one the escalation queue mostly reads
SCORE_HORIZON = 90
#: rows of the reference kept for the PSIs and its scores (deciles of 20,000 rows are exact enough)
REFERENCE_ROWS = 20_000
#: rows the importance (mean |SHAP|) is measured on
IMPORTANCE_ROWS = 2_000


@dataclass(frozen=True)
class MonitorResult:
    """One monitor's verdict: `value` against `threshold` (None when it could not be measured)."""

    monitor: str
    state: str  # one of STATES
    value: float | None
    threshold: float
    summary: str
    details: dict = field(default_factory=dict)

    @property
    def breached(self) -> bool:
        return self.state == "breach"

    def to_dict(self) -> dict:
        return asdict(self)


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), digits)


def top_features(model, sample: pd.DataFrame, n: int) -> list[str]:
    """The model's `n` most important features: mean |SHAP| on the 90-day risk over `sample`, the
    same measure as the training run's importance table; features the sample has no value of are
    left out (a family without data cannot drift)."""
    contrib = np.abs(model.contributions_matrix(model.encode(sample), SCORE_HORIZON)[:, :-1]).mean(axis=0)
    order = np.argsort(-contrib, kind="stable")
    seen = [
        model.features[j]
        for j in order
        if model.features[j] in sample.columns and sample[model.features[j]].notna().any()
    ]
    return seen[:n]


def feature_drift(reference: pd.DataFrame, today: pd.DataFrame, features: list[str], threshold: float) -> MonitorResult:
    """PSI of each feature between the reference and today's snapshot; a breach when any exceeds `threshold`."""
    rows = []
    for name in features:
        if name not in reference.columns or name not in today.columns:
            continue
        ref, now = reference[name], today[name]
        if pd.api.types.is_numeric_dtype(ref) and pd.api.types.is_numeric_dtype(now):
            r, t = ref.to_numpy(dtype=float, na_value=np.nan), now.to_numpy(dtype=float, na_value=np.nan)
            value = psi(r, t)
            means = {
                "reference_mean": _round(np.nanmean(r)) if np.isfinite(r).any() else None,
                "today_mean": _round(np.nanmean(t)) if np.isfinite(t).any() else None,
            }
        else:
            value, means = category_psi(ref, now), {}
        if np.isfinite(value):
            rows.append({"feature": name, "psi": _round(value), **means})
    if not rows:
        return MonitorResult(
            "feature_drift",
            "unavailable",
            None,
            threshold,
            "none of the model's top features is in both the reference and today's snapshot",
        )
    worst = max(rows, key=lambda r: r["psi"])
    shifted = [r["feature"] for r in rows if r["psi"] > threshold]
    details = {"features": rows, "shifted": shifted, "reference_rows": len(reference), "today_rows": len(today)}
    if shifted:
        return MonitorResult(
            "feature_drift",
            "breach",
            worst["psi"],
            threshold,
            f"{len(shifted)} of the model's top {len(rows)} features shifted (PSI above {threshold:g}): "
            + ", ".join(f"{r['feature']} {r['psi']:.2f}" for r in rows if r["feature"] in shifted),
            details,
        )
    return MonitorResult(
        "feature_drift",
        "ok",
        worst["psi"],
        threshold,
        f"the model's top {len(rows)} features are stable: largest PSI {worst['psi']:.3f} ({worst['feature']})",
        details,
    )


def score_distribution(
    reference: np.ndarray, today: np.ndarray, psi_threshold: float, mean_shift: float
) -> MonitorResult:
    """PSI of p_90d between the reference's scores and today's, and the relative shift of the mean;
    a breach when the PSI exceeds `psi_threshold` or the mean moved by more than `mean_shift` of the reference mean."""
    reference, today = np.asarray(reference, dtype=float), np.asarray(today, dtype=float)
    value = psi(reference, today)
    if not np.isfinite(value):
        return MonitorResult(
            "score_distribution", "unavailable", None, psi_threshold, "no reference scores to compare with"
        )
    ref_mean, today_mean = float(np.nanmean(reference)), float(np.nanmean(today))
    shift = today_mean / ref_mean - 1 if ref_mean > 0 else float("nan")
    details = {
        "horizon_days": SCORE_HORIZON,
        "reference_mean": _round(ref_mean),
        "today_mean": _round(today_mean),
        "mean_shift": _round(shift),
        "mean_shift_threshold": mean_shift,
        "reference_rows": len(reference),
        "today_rows": len(today),
    }
    moved = f"mean p_{SCORE_HORIZON}d {today_mean:.4f} against {ref_mean:.4f} in the reference ({shift:+.0%})"
    if value > psi_threshold or abs(shift) > mean_shift:
        return MonitorResult(
            "score_distribution",
            "breach",
            _round(value),
            psi_threshold,
            f"the {SCORE_HORIZON}-day risk distribution moved: PSI {value:.3f}, {moved}",
            details,
        )
    return MonitorResult(
        "score_distribution",
        "ok",
        _round(value),
        psi_threshold,
        f"the {SCORE_HORIZON}-day risk distribution is stable: PSI {value:.3f}, {moved}",
        details,
    )


def matured_run(dates: list[pd.Timestamp], known_through: pd.Timestamp, horizon_days: int) -> pd.Timestamp | None:
    """The latest run date whose horizon has ended by `known_through` (its outcomes are all known)."""
    matured = [d for d in dates if d + pd.Timedelta(days=horizon_days) <= known_through]
    return max(matured) if matured else None


def calibration(
    runs: dict[int, tuple[pd.Timestamp, pd.DataFrame]],
    churned_at: pd.Series,
    known_through: pd.Timestamp,
    *,
    first_run: pd.Timestamp | None,
    z_threshold: float,
    tolerance: float,
    min_expected: float,
) -> MonitorResult:
    """Calibration in the large of matured runs: `runs` maps a horizon to (its run date, that run's
    account_id and p_<h>d); `churned_at` is the churn date by account. Per horizon: observed churns
    O in (run, run + h] against E = sum of p, z = (O - E) / sqrt(sum p(1 - p)). A breach when
    |z| > `z_threshold` and |O / E - 1| > `tolerance`; E below `min_expected` is not enough data."""
    from models.metrics import expected_calibration_error

    rows = []
    for h in HORIZONS:
        if h not in runs:
            matures = (
                f"; the first run ({first_run.date()}) matures on {(first_run + pd.Timedelta(days=h)).date()}"
                if first_run is not None
                else ""
            )
            rows.append(
                {
                    "horizon_days": h,
                    "state": "not_enough_data",
                    "note": f"no scored run's {h}-day outcomes are known yet{matures}",
                }
            )
            continue
        run, frame = runs[h]
        p = frame[f"p_{h}d"].to_numpy(dtype=float)
        # reindex, not map: mapping through an empty series (a base with no churn yet) fails on its dtype
        when = churned_at.reindex(frame["account_id"].astype(str).to_numpy())
        y = ((when > run) & (when <= run + pd.Timedelta(days=h))).to_numpy(dtype=float)
        expected, observed, variance = float(p.sum()), float(y.sum()), float((p * (1 - p)).sum())
        row = {
            "horizon_days": h,
            "run": str(run.date()),
            "accounts": len(frame),
            "expected_churns": _round(expected, 2),
            "observed_churns": int(observed),
        }
        if expected < min_expected:
            rows.append(
                {
                    **row,
                    "state": "not_enough_data",
                    "note": f"{expected:.1f} churns predicted in the {run.date()} run, fewer than the {min_expected:g} needed to judge",
                }
            )
            continue
        z = (observed - expected) / np.sqrt(variance) if variance > 0 else float("nan")
        gap = observed / expected - 1
        breach = abs(z) > z_threshold and abs(gap) > tolerance
        rows.append(
            {
                **row,
                "state": "breach" if breach else "ok",
                "z": _round(z, 2),
                "gap": _round(gap, 3),
                "ece": _round(expected_calibration_error(y, p)),
            }
        )
    judged = [r for r in rows if r["state"] in ("ok", "breach")]
    details = {
        "horizons": rows,
        "known_through": str(known_through.date()),
        "tolerance": tolerance,
        "min_expected_churns": min_expected,
    }
    if not judged:
        # the shortest horizon matures first: its note says when judging can start
        return MonitorResult(
            "calibration",
            "not_enough_data",
            None,
            z_threshold,
            f"not enough matured outcomes yet: {rows[0]['note']}",
            details,
        )
    worst = max(judged, key=lambda r: abs(r["z"]) if r["z"] is not None else -1)

    def line(r: dict) -> str:
        return (
            f"{r['horizon_days']}-day risk of the {r['run']} run: {r['observed_churns']} churned against {r['expected_churns']:.1f} "
            f"predicted (z {r['z']:+.1f}, {r['gap']:+.0%})"
        )

    breached = [r for r in judged if r["state"] == "breach"]
    if breached:
        return MonitorResult(
            "calibration",
            "breach",
            worst["z"],
            z_threshold,
            "miscalibrated: " + "; ".join(line(r) for r in breached),
            details,
        )
    return MonitorResult(
        "calibration",
        "ok",
        worst["z"],
        z_threshold,
        "calibrated within tolerance: " + "; ".join(line(r) for r in judged),
        details,
    )


# -- wiring ---------------------------------------------------------------------------------------


def _utc(value) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def history_dates(folder: Path) -> dict[pd.Timestamp, Path]:
    """The runs kept in `<scores>/history/`, by date (files named <YYYY-MM-DD>.parquet; others ignored)."""
    out = {}
    for path in sorted(Path(folder).glob("*.parquet")):
        try:
            out[_utc(dt.date.fromisoformat(path.stem))] = path
        except ValueError:
            continue
    return out


def record_history(scores_dir: Path, scores: pd.DataFrame, model_version: str | None, keep_days: int) -> Path:
    """Keep today's scores as `<scores>/history/<as_of>.parquet` (a rerun of the day replaces it) and
    drop the runs older than `keep_days`."""
    as_of = _utc(scores["cutoff"].max())
    folder = Path(scores_dir) / HISTORY
    kept = scores[["account_id", "cutoff", *CURVE_COLUMNS]].assign(
        account_id=lambda f: f["account_id"].astype(str), model_version=str(model_version)
    )
    path = write_parquet(kept, folder / f"{as_of.date()}.parquet")
    for date, old in history_dates(folder).items():
        if date < as_of - pd.Timedelta(days=keep_days):
            old.unlink(missing_ok=True)
    return path


def _served_model(summary: dict, settings: Settings):
    """The model the score run used and its registry entry (None for a model outside the registry)."""
    from models import registry

    registry.connect(settings.mlflow_tracking_uri)
    version = str(summary.get("model_version") or "")
    uri = (
        f"models:/{registry.MODEL_NAME}/{version}"
        if version.isdigit()
        else summary.get("model") or f"models:/{registry.MODEL_NAME}@{registry.CHAMPION}"
    )
    return registry.load_curve(uri), registry.describe(uri), uri


def _reference(info: dict | None, days: int) -> tuple[pd.DataFrame | None, str]:
    """The model's training panel, its last `days` of cutoffs (at most REFERENCE_ROWS rows), or why there is none."""
    from pipelines.features import read_snapshots

    tag = info["tags"].get("features_dir") if info else None
    if not tag:
        return None, "the model has no training panel in the registry (features_dir tag)"
    folder = Path(tag)
    if not (folder / "snapshots").is_dir():
        return None, f"the model's training panel {folder} is gone: rebuild it or retrain"
    panel = read_snapshots(folder)
    panel = panel[pd.to_datetime(panel["cutoff"], utc=True) >= _utc(panel["cutoff"].max()) - pd.Timedelta(days=days)]
    if len(panel) > REFERENCE_ROWS:
        panel = panel.sample(REFERENCE_ROWS, random_state=0)
    return panel.reset_index(drop=True), str(folder)


def _unavailable(monitor: str, threshold: float, why: str) -> MonitorResult:
    return MonitorResult(monitor, "unavailable", None, threshold, why)


def run_monitors(
    scores_dir: Path,
    *,
    settings: Settings,
    config: Config | None = None,
    now: dt.datetime | None = None,
    alert: bool = True,
    progress: Callable[[str], None] | None = None,
    named: str = "--scores",
) -> dict:
    """The three monitors on a `churn score` output folder: today's scores kept in its history,
    `monitoring.json` written beside `score_summary.json`, an alert queued per breach (with `alert`,
    at most one per monitor and day of `now`). Returns what monitoring.json holds. `config`: the
    entry point's configuration (loaded from settings.config_dir when not given); `named`: where the
    folder came from, for messages."""
    say = progress or (lambda _line: None)
    started = time.perf_counter()
    now = now or dt.datetime.now(dt.UTC)
    policy = (config or load_config(settings.config_dir)).escalation
    config = policy.monitoring
    folder = Path(scores_dir)
    if not (folder / "scores.parquet").is_file() or not (folder / "features.parquet").is_file():
        raise InputError(
            f"{named} {folder}: no scores.parquet and features.parquet; run `churn score --out {folder}` first"
        )
    summary_path = folder / "score_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    scores = pd.read_parquet(folder / "scores.parquet")
    if not len(scores):
        raise InputError(f"{named} {folder}: scores.parquet has no rows; expected the accounts of a `churn score` run")
    today = pd.read_parquet(folder / "features.parquet")
    as_of = _utc(scores["cutoff"].max())
    record_history(folder, scores, summary.get("model_version"), config.history_days)

    model, info, uri = _served_model(summary, settings)
    reference, where = _reference(info, config.reference_days)
    if reference is None:
        drift = _unavailable("feature_drift", config.drift_psi, where)
        distribution = _unavailable("score_distribution", config.score_psi, where)
    else:
        sample = reference.sample(min(len(reference), IMPORTANCE_ROWS), random_state=0)
        features = top_features(model, sample, config.top_features)
        drift = feature_drift(reference, today, features, config.drift_psi)
        column = CURVE_COLUMNS[HORIZONS.index(SCORE_HORIZON)]
        distribution = score_distribution(
            model.predict_curve(reference)[:, HORIZONS.index(SCORE_HORIZON)],
            scores[column].to_numpy(dtype=float),
            config.score_psi,
            config.score_mean_shift,
        )
    calibrated = _calibration(folder, summary, as_of, config)
    results = [drift, distribution, calibrated]
    for r in results:
        say(f"monitor {LABELS[r.monitor]}: {r.state} (value {r.value}, threshold {r.threshold:g}): {r.summary}")
    queued = _alert([r for r in results if r.breached], settings, policy, now, as_of, uri, say) if alert else 0
    out = {
        "as_of": str(as_of.date()),
        "checked_at": now.isoformat(),
        "model": uri,
        "model_version": info["version"] if info else None,
        "reference": where,
        "monitors": [r.to_dict() for r in results],
        "breaches": [r.monitor for r in results if r.breached],
        "alerts_queued": queued,
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(out, folder / "monitoring.json")
    return out


def _calibration(folder: Path, summary: dict, as_of: pd.Timestamp, config) -> MonitorResult:
    from pipelines.models import churn_times

    runs_on = history_dates(folder / HISTORY)
    data = Path(summary["data"]) if summary.get("data") else None
    if data is None or not data.is_dir():
        return _unavailable(
            "calibration",
            config.calibration_z,
            f"the scored data folder {summary.get('data')} is gone: no outcomes to compare with",
        )
    churned_at = churn_times(data)
    if churned_at is None:  # a base without a churn table has seen no churn yet
        churned_at = pd.Series(dtype="datetime64[ns, UTC]")
    runs = {}
    for h in HORIZONS:
        run = matured_run(list(runs_on), as_of, h)
        if run is not None:
            runs[h] = (run, pd.read_parquet(runs_on[run], columns=["account_id", f"p_{h}d"]))
    return calibration(
        runs,
        churned_at,
        as_of,
        first_run=min(runs_on) if runs_on else None,
        z_threshold=config.calibration_z,
        tolerance=config.calibration_tolerance,
        min_expected=config.min_expected_churns,
    )


def _alert(
    breaches: list[MonitorResult], settings: Settings, policy, now: dt.datetime, as_of: pd.Timestamp, uri: str, say
) -> int:
    """One outbox notice per breached monitor, deduplicated on (monitor, day of `now`)."""
    from escalation.store import Store

    if not breaches:
        return 0
    names = list(
        policy.monitoring.destinations if policy.monitoring.destinations is not None else policy.alerts.default
    )
    if not names:
        say(
            "monitor: breaches found but no destination is configured (monitoring.destinations or alerts.default): no alert queued"
        )
        return 0
    day = now.astimezone(dt.UTC).date()
    with Store(settings.store_url, policy) as store:
        queued = sum(
            store.enqueue_notice(TOPIC, f"{r.monitor}|{day}", _message(r, as_of, uri), names, now, policy=policy)
            for r in breaches
        )
    say(
        f"monitor: {queued} alert(s) queued for {', '.join(names)} ({len(breaches) * len(names) - queued} already sent today)"
    )
    return queued


def _message(result: MonitorResult, as_of: pd.Timestamp, uri: str) -> dict:
    facts = {
        "monitor": LABELS[result.monitor],
        "value": result.value,
        "threshold": result.threshold,
        "as_of": str(as_of.date()),
        "model": uri,
    }
    if result.monitor == "feature_drift":
        facts["shifted"] = ", ".join(result.details.get("shifted", []))
    return {
        "title": f"Churn model monitor: {LABELS[result.monitor]} breached",
        "text": f"{result.summary} (scores as of {as_of.date()})",
        "facts": {k: v for k, v in facts.items() if v not in (None, "")},
    }
