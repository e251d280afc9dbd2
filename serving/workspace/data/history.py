"""What depends on the served model: the snapshot's curves and tiers (the daily run's when it scored
with that model, see `ModelViews._tiers`), and every account's risk history, i.e. the served model
applied to the account's rows of the training panel it learned from (the registry's `features_dir`
tag; every past cutoff, one model, so the line shows the account changing and not the model),
followed by the daily runs `churn score` keeps in `<scores>/history/` (one a week), as they were
scored then. Built once per model version."""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.vocabulary import CURVE_COLUMNS, HORIZONS
from serving.runtime import REASONS_HORIZON
from serving.workspace.data.sources import positions
from serving.workspace.format import percent

#: kept daily runs thinned to one per this many days on the history line
HISTORY_SPACING_DAYS = 7


@dataclass(frozen=True)
class ModelView:
    """What depends on the served model version: the curves and tiers of the snapshot's accounts and
    every account's risk history under that model (sorted by account position)."""

    version: str
    curves: np.ndarray  # [accounts, horizons]
    tiers: np.ndarray  # [accounts] band names
    risk_tiers: np.ndarray  # [accounts] the served model's band for the risk alone (the API's `tier`)
    history_position: np.ndarray  # [rows] account position, sorted
    history_dates: np.ndarray  # [rows] datetime64[D]
    history_curves: np.ndarray  # [rows, horizons]
    history_source: np.ndarray  # [rows] where each point comes from, in words
    notes: tuple[str, ...]
    tiers_from: str  # where the tiers come from, in words


class ModelViews:
    """The view of the model the runtime serves now, for the snapshot's accounts (`index`, cut at
    `cutoff`). The first is built at construction, the training panel scored on every core (nothing
    is served yet)."""

    def __init__(self, runtime: Any, index: pd.Index, cutoff: pd.Timestamp, scores_dir: Path, summary: dict):
        self.runtime = runtime
        self.index = index
        self.cutoff = cutoff
        self._lock = threading.Lock()
        self._kept_notes: list[str] = []
        self._kept = kept_history(scores_dir / "history", index, self._kept_notes)
        self._daily = DailyTiers.read(scores_dir, index, summary)
        state = runtime.state
        notes: list[str] = []
        self._view: ModelView | None = self._build(state, self._training_history(state, notes, threads=0), tuple(notes))

    def current(self) -> ModelView:
        """The curves, tiers and risk history under the model the runtime serves now. A new champion
        (swapped in by the runtime) is picked up on the next request with its curves and tiers at
        once; its history under the training panel is scored on a background thread (one LightGBM
        thread, the requests keep the other core) and shows the kept daily runs meanwhile."""
        state = self.runtime.state
        view = self._view
        if view is not None and view.version == str(state.version):
            return view
        with self._lock:
            if self._view is None or self._view.version != str(state.version):
                self._view = self._build(state, None)
                threading.Thread(
                    target=self._complete_history, args=(state,), name="workspace-history", daemon=True
                ).start()
            return self._view

    def _complete_history(self, state: Any) -> None:
        notes: list[str] = []
        try:
            view = self._build(state, self._training_history(state, notes, threads=1), tuple(notes))
        except Exception:  # noqa: BLE001 - the kept runs keep serving; the next swap tries again
            return
        with self._lock:
            if self._view is not None and self._view.version == view.version:
                self._view = view

    def _build(self, state: Any, training: pd.DataFrame | None, notes: tuple[str, ...] = ()) -> ModelView:
        """The view of one model state; `training`: its history on the training panel (None: not yet)."""
        curves = np.asarray(state.stored[0], dtype=float).reshape(-1, len(HORIZONS))
        risk_tiers = np.array([answer[0].tier for answer in state.answers], dtype=object)
        tiers, tiers_from = self._tiers(state, risk_tiers)
        frames = [f for f in (training, self._kept) if f is not None and len(f)]
        if frames:
            history = pd.concat(frames, ignore_index=True)
            # the snapshot's own date is "now"; a kept run of another day wins over the re-scored training row
            history = history[history["date"] < np.datetime64(self.cutoff.date())]
            history = history.sort_values(["position", "date", "rank"], kind="stable").drop_duplicates(
                ["position", "date"], keep="last"
            )
        else:
            history = pd.DataFrame({"position": np.zeros(0, dtype=np.int64), "date": [], "source": []})
        return ModelView(
            str(state.version),
            curves,
            tiers,
            risk_tiers,
            history["position"].to_numpy(dtype=np.int64),
            history["date"].to_numpy(dtype="datetime64[D]"),
            history[list(CURVE_COLUMNS)].to_numpy(dtype=float) if len(history) else np.zeros((0, len(HORIZONS))),
            history["source"].to_numpy(dtype=object),
            tuple(notes) + tuple(self._kept_notes),
            tiers_from,
        )

    def _tiers(self, state: Any, served: np.ndarray) -> tuple[np.ndarray, str]:
        """The daily run's bands when it scored with the served model (they weigh each account's
        tickets as well as its risk, as the leadership report counts them); else `served`, the served
        model's bands for the risk alone, and the words say which."""
        daily = self._daily
        if daily is not None and daily.version == str(state.version):
            return (
                np.where(daily.tiers != "", daily.tiers, served),
                f"Bands are those the daily run of {daily.as_of} set from each account's risk and its tickets, "
                "as the leadership report counts them.",
            )
        words = f"Bands are the served model's (version {state.version}) for the risk alone"
        if daily is None:
            return served, words + "."
        return served, (
            f"{words}: the daily run of {daily.as_of} scored with version {daily.version} and also weighed "
            "each account's tickets, so the leadership report's counts differ until `churn score` runs again."
        )

    def _training_history(self, state: Any, notes: list[str], threads: int) -> pd.DataFrame | None:
        """The served model on the snapshot's accounts' rows of the panel it was trained on."""
        import pyarrow.parquet as pq

        from models import registry

        try:
            info = registry.describe(registry.version_uri(str(state.version))) or registry.describe(
                self.runtime.model_uri
            )
        except Exception:  # noqa: BLE001 - the registry is optional for this chart; the page says why it is short
            info = None
        folder = Path(info["tags"].get("features_dir", "")) if info else None
        if folder is None or not str(folder) or not (folder / "snapshots").is_dir():
            notes.append(
                "The panel the model was trained on is not available"
                + (f" ({folder})" if folder and str(folder) not in ("", ".") else "")
                + ": the history shows only the kept daily runs."
            )
            return None
        model = state.model
        parts = []
        for path in sorted((folder / "snapshots").glob("*.parquet")):
            present = set(pq.read_schema(path).names)
            columns = [c for c in dict.fromkeys(["account_id", "cutoff", *model.features]) if c in present]
            part = pd.read_parquet(path, columns=columns)
            part = part[positions(self.index, part["account_id"]) >= 0]
            if len(part):
                parts.append(part)
        if not parts:
            return None
        panel = pd.concat(parts, ignore_index=True)
        curves = model.curve_matrix(model.encode(panel), num_threads=threads)
        out = pd.DataFrame(curves, columns=list(CURVE_COLUMNS))
        out["position"] = positions(self.index, panel["account_id"])
        out["date"] = pd.to_datetime(panel["cutoff"], utc=True).dt.tz_localize(None).dt.normalize().to_numpy()
        out["source"] = f"model {state.version} on its training data"
        out["rank"] = 0
        return out


@dataclass(frozen=True)
class DailyTiers:
    """The bands the latest daily run set (`<scores>/scores.parquet`'s `tier`; "" for an account it
    did not score) and the model version it scored with (`score_summary.json`)."""

    version: str
    as_of: str
    tiers: np.ndarray  # [accounts]

    @classmethod
    def read(cls, scores_dir: Path, index: pd.Index, summary: dict) -> DailyTiers | None:
        """None when the run's version, date or tiers cannot be read (the served bands are shown)."""
        path = scores_dir / "scores.parquet"
        if not summary.get("model_version") or not path.is_file():
            return None
        try:
            scores = pd.read_parquet(path, columns=["account_id", "tier"])
        except (OSError, ValueError, KeyError):
            return None
        tiers = np.full(len(index), "", dtype=object)
        where = positions(index, scores["account_id"])
        kept = where >= 0
        tiers[where[kept]] = scores["tier"].astype(str).to_numpy()[kept]
        return cls(str(summary["model_version"]), str(summary.get("as_of", "")), tiers)


def kept_history(folder: Path, index: pd.Index, notes: list[str]) -> pd.DataFrame | None:
    """The daily runs kept in `folder` (<scores>/history/; one a week, newest kept), as scored then."""
    dated = []
    for path in sorted(folder.glob("*.parquet")):
        try:
            dated.append((dt.date.fromisoformat(path.stem), path))
        except ValueError:
            continue
    kept, last = [], None
    for day, path in sorted(dated, reverse=True):
        if last is None or (last - day).days >= HISTORY_SPACING_DAYS:
            kept.append(path)
            last = day
    parts = []
    for path in kept:
        try:
            part = pd.read_parquet(path)
        except (OSError, ValueError) as exc:
            notes.append(f"A kept score run ({path.name}) could not be read: {exc}")
            continue
        if not {"account_id", "cutoff", *CURVE_COLUMNS} <= set(part.columns):
            continue
        part = part.assign(position=positions(index, part["account_id"]))
        part = part[part["position"] >= 0]
        version = part["model_version"].astype(str) if "model_version" in part else "?"
        parts.append(
            pd.DataFrame(
                {
                    **{c: part[c].to_numpy(dtype=float) for c in CURVE_COLUMNS},
                    "position": part["position"].to_numpy(),
                    "date": pd.to_datetime(part["cutoff"], utc=True).dt.tz_localize(None).dt.normalize().to_numpy(),
                    "source": ("daily run, model " + version).to_numpy()
                    if isinstance(version, pd.Series)
                    else "daily run",
                    "rank": 1,
                }
            )
        )
    return pd.concat(parts, ignore_index=True) if parts else None


def history_page(view: ModelView, i: int, now: float, as_of: str) -> dict:
    """Account i's risk at the reasons' horizon over the past cutoffs, then `now` (on `as_of`)."""
    lo, hi = np.searchsorted(view.history_position, [i, i + 1])
    k = HORIZONS.index(REASONS_HORIZON)
    points = [
        {"date": str(d), "p": float(p[k]), "text": percent(float(p[k])), "source": str(s)}
        for d, p, s in zip(
            view.history_dates[lo:hi], view.history_curves[lo:hi], view.history_source[lo:hi], strict=True
        )
    ]
    points.append({"date": as_of, "p": now, "text": percent(now), "source": "now"})
    sources = sorted({p["source"] for p in points[:-1]})
    return {"points": points, "horizon": REASONS_HORIZON, "sources": sources}
