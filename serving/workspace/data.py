"""What the workspace's account page, book view and search show, as plain dicts and lists for the
templates (serving/workspace/templates/), from what the platform already keeps:

- the served model and the latest scored snapshot (the API's `ServingRuntime`): the risk curve, the
  tier, and the reasons in probability points (`ServingRuntime.explain`, the numbers /explain gives);
- the risk history: the served model applied to the account's rows of the training panel it learned
  from (the registry's `features_dir` tag; every past cutoff, one model, so the line shows the
  account changing and not the model), followed by the daily runs `churn score` keeps in
  `<scores>/history/` (one a week), as they were scored then;
- the data folder the snapshot was scored from (`score_summary.json`): weekly usage, tickets with
  their CSAT/CES, NPS answers and the churn table, cut at the snapshot's cutoff like its features;
- the operational store: escalations with their status history and handoff packages, follow-ups,
  ratings, and escalation/evaluation.py's outcome and held-out comparison (called directly, as
  `churn evaluate` does, without the pipelines layer);
- the model's logged backtest metrics and the latest `monitoring.json` (drift).

Every source may be missing (no support tables, no training panel, an unreadable store): each gap
becomes a short sentence in the page's `notes`, never an exception.

Cost. Everything shared by requests is computed once per snapshot at construction (accounts as
arrays with integer codes for segment and owner, weekly usage as a dense matrix, support events and
open tickets sorted by account) and once per model version (curves, tiers, the history under that
model), so a request is a slice, a few `bincount`s and, for the account page, one /explain and three
small store queries. The store's evaluation is recomputed only when the store changed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.errors import InputError
from core.settings import Settings
from core.vocabulary import BANDS, CURVE_COLUMNS, HORIZONS
from escalation.evaluation import NO_OWNER
from serving.runtime import REASONS_HORIZON, NotFound
from serving.workspace import charts

#: weeks of usage on the account page
USAGE_WEEKS = 26
#: days of support history on the account page
SUPPORT_DAYS = 180
#: support events listed on the account page (newest first)
SUPPORT_EVENTS = 40
#: kept daily runs thinned to one per this many days on the history line
HISTORY_SPACING_DAYS = 7
#: steps of the waterfall named one by one (the others are summed into one step per role)
WATERFALL_DRIVERS, WATERFALL_CONTEXT = 6, 3
#: reasons listed in words under the waterfall
LISTED_REASONS = 5
#: accounts listed on the book view
TOP_ACCOUNTS = 20
SEARCH_LIMIT = 20
NO_SEGMENT = "(none)"
USAGE_MEASURES = {"active_users": "active users (daily average)", "logins": "logins"}
#: what CS recorded, in the words the pages use (resolution outcomes and a rating's outcome)
OUTCOME_WORDS = {
    "saved": "saved: the customer stays",
    "churned": "churned: the customer left",
    "not_at_risk": "not at risk: a false alarm",
    "unknown": "outcome not known yet",
}


def _date(value: Any) -> str | None:
    """An ISO day (YYYY-MM-DD) or None."""
    if value is None or pd.isna(value):
        return None
    return str(pd.Timestamp(value).date())


def _minute(value: Any) -> str | None:
    """A UTC time to the minute, as the handoff package writes it."""
    if value is None or pd.isna(value):
        return None
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.strftime("%Y-%m-%d %H:%M UTC")


def _utc(value: Any) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


@dataclass(frozen=True)
class _ModelView:
    """What depends on the served model version: the curves and tiers of the snapshot's accounts and
    every account's risk history under that model (sorted by account position)."""

    version: str
    curves: np.ndarray  # [accounts, horizons]
    tiers: np.ndarray  # [accounts] band names
    history_position: np.ndarray  # [rows] account position, sorted
    history_dates: np.ndarray  # [rows] datetime64[D]
    history_curves: np.ndarray  # [rows, horizons]
    history_source: np.ndarray  # [rows] where each point comes from, in words
    notes: tuple[str, ...]


@dataclass(frozen=True)
class _StoreView:
    """The store as the book reads it, at one state of the store (`signature`)."""

    signature: tuple
    position: np.ndarray  # [escalations] account position in the snapshot, -1 if not in it
    account_ids: np.ndarray
    status: np.ndarray
    outcome: np.ndarray  # "" when not resolved
    acknowledged: np.ndarray  # bool: ever acknowledged
    respond_by: np.ndarray  # naive UTC datetime64, NaT without a window
    block: dict  # escalation/evaluation.py's block for the whole store
    ratings: dict


@dataclass
class _Support:
    """Support events and open tickets of every account, sorted by account position."""

    events: pd.DataFrame  # position, at, what, detail
    event_bounds: np.ndarray  # [accounts + 1] offsets into events
    open_tickets: pd.DataFrame  # position, ticket_id, created_at, priority, category, channel
    open_bounds: np.ndarray
    notes: list[str] = field(default_factory=list)


class WorkspaceData:
    """The workspace's read side over one scored snapshot (see the module docstring).

    `runtime`: the API's `serving.runtime.ServingRuntime` (default: one is loaded from `settings`,
    text models off); `store`: an `escalation.store.Store` (default: the runtime's)."""

    def __init__(self, settings: Settings, runtime: Any = None, store: Any = None):
        if runtime is None:
            from serving.runtime import ServingRuntime

            runtime = ServingRuntime(settings, text=False)
        self.settings = settings
        self.runtime = runtime
        self.store = store if store is not None else getattr(runtime, "store", None)
        self._lock = threading.Lock()
        self.scores_dir = Path(settings.scores_dir or Path(settings.data_dir) / "scores")
        self.summary = self._read_json(self.scores_dir / "score_summary.json")
        frame = runtime.frame
        self.ids = frame["account_id"].astype(str).to_numpy()
        self.n = len(self.ids)
        self._index = pd.Index(self.ids)
        self.cutoff = _utc(frame["cutoff"].max()) if self.n else pd.Timestamp.now(tz="UTC").normalize()
        self.as_of = str(self.cutoff.date())
        self.notes: list[str] = []
        self.data_dir = self._find_data_dir()
        self.names = self._text_column(frame, "account_name", "").astype(object)
        self.names = np.where(self.names == "", self.ids, self.names)
        self.segment_codes, self.segment_names = self._codes(self._text_column(frame, "segment", NO_SEGMENT))
        self.owner_codes, self.owner_names = self._codes(self._text_column(frame, "csm_owner", NO_OWNER))
        self.arr = (
            pd.to_numeric(frame["arr_current"], errors="coerce").fillna(0.0).to_numpy(dtype=float)
            if "arr_current" in frame
            else np.zeros(self.n)
        )
        renewal = (
            pd.to_numeric(frame["days_to_renewal"], errors="coerce").to_numpy(dtype=float)
            if "days_to_renewal" in frame
            else np.full(self.n, np.nan)
        )
        self.days_to_renewal = renewal
        # search keys, lower case once
        self._search_ids = pd.Series(self.ids).str.lower()
        self._search_names = pd.Series(self.names.astype(str)).str.lower()
        tables = self._read_tables()
        self.usage, self.usage_labels = self._usage(tables.get("usage_daily"))
        self.support = self._support(tables)
        self.churned_at, self.data_end, self.arr_by_account = self._outcome_inputs(tables)
        self._store_cache: _StoreView | None = None
        self.monitoring = self._read_json(self.scores_dir / "monitoring.json")
        self._kept_notes: list[str] = []
        self._kept = self._kept_history(self._kept_notes)
        state = runtime.state
        notes: list[str] = []
        # at construction the whole history at once, on every core: nothing is being served yet
        self._model: _ModelView | None = self._build_model_view(
            state, self._training_history(state, notes, threads=0), tuple(notes)
        )
        with contextlib.suppress(Exception):  # the first book request must not pay for the imports and reads
            self._store_view([])

    # -- construction helpers -----------------------------------------------------------------

    @staticmethod
    def _read_json(path: Path) -> dict:
        try:
            return json.loads(path.read_text()) if path.is_file() else {}
        except (OSError, ValueError):
            return {}

    def _find_data_dir(self) -> Path | None:
        named = self.summary.get("data")
        for candidate in (named, None if named else self.settings.data_dir):
            if candidate and Path(candidate).is_dir():
                return Path(candidate)
        where = named or self.settings.data_dir
        self.notes.append(
            f"The data folder the scores came from ({where}) is not there: usage, support and outcomes cannot be shown."
        )
        return None

    def _text_column(self, frame: pd.DataFrame, column: str, missing: str) -> np.ndarray:
        if column not in frame:
            return np.full(self.n, missing, dtype=object)
        values = frame[column].astype(object)
        return values.where(values.notna() & (values.astype(str).str.strip() != ""), missing).astype(str).to_numpy()

    @staticmethod
    def _codes(values: np.ndarray) -> tuple[np.ndarray, list[str]]:
        codes, names = pd.factorize(pd.Series(values), sort=True)
        return codes.astype(np.int64), [str(n) for n in names]

    def _read_tables(self) -> dict[str, pd.DataFrame]:
        """The input tables the pages show, only the columns they need, coerced by their contracts
        (the builders below keep the rows before the cutoff); an absent table is left out."""
        from core.contracts import TableFiles, coerce_columns
        from core.errors import ChurnError

        if self.data_dir is None:
            return {}
        files = TableFiles(self.data_dir)
        wanted = {
            "usage_daily": ["account_id", "date", *USAGE_MEASURES],
            "tickets": ["ticket_id", "account_id", "created_at", "priority", "category", "channel"],
            "ticket_events": ["ticket_id", "at", "kind", "value"],
            "surveys": ["account_id", "answered_at", "kind", "score"],
            "churn": ["account_id", "churned_at"],
            "accounts": ["account_id", "arr"],
            "ticket_messages": ["sent_at"],
            "account_events": ["at"],
        }
        out: dict[str, pd.DataFrame] = {}
        for name, columns in wanted.items():
            try:
                frame = self._read(files, name, columns)
                if frame is not None:
                    out[name] = coerce_columns(name, frame)
            except (ChurnError, ValueError, KeyError) as exc:
                self.notes.append(f"The {name} table in {self.data_dir} could not be read ({exc}); it is left out.")
        return out

    def _read(self, files: Any, name: str, columns: list[str]) -> pd.DataFrame | None:
        """A table's columns (those it has); of a Parquet usage table only the rows of the weeks shown
        and later (the later ones still tell the data's end), read with a filter on its date."""
        path = files.path(name)
        if path is None or path.suffix != ".parquet":
            return files.read(name, columns)
        import pyarrow as pa
        import pyarrow.dataset as ds

        dataset = ds.dataset(path)
        present = [c for c in columns if c in dataset.schema.names]
        kind = dataset.schema.field("date").type if name == "usage_daily" and "date" in present else None
        if kind is not None and (pa.types.is_timestamp(kind) or pa.types.is_date(kind)):
            start = self.cutoff - pd.Timedelta(weeks=USAGE_WEEKS + 1)
            if pa.types.is_date(kind):
                bound = pa.scalar(start.date(), type=kind)
            else:
                bound = pa.scalar((start if kind.tz else start.tz_localize(None)).to_pydatetime(), type=kind)
            try:
                return dataset.to_table(columns=present, filter=ds.field("date") >= bound).to_pandas()
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                pass  # an unusual time type: read it whole
        return files.read(name, present)

    def _positions(self, ids: pd.Series) -> np.ndarray:
        """Each id's position in the snapshot (-1 when the snapshot does not hold it)."""
        return self._index.get_indexer(ids.astype(str))

    def _usage(self, usage: pd.DataFrame | None) -> tuple[dict[str, np.ndarray], list[str]]:
        """Weekly usage of every account over the USAGE_WEEKS weeks before the cutoff: a dense
        [accounts, weeks] matrix per measure, oldest week first (active users as the week's daily
        average, logins as its sum); NaN for a week without any row."""
        if usage is None:
            if self.data_dir is not None:
                self.notes.append("No usage table in the data folder: the usage timeline is empty.")
            return {}, []
        start = self.cutoff - pd.Timedelta(weeks=USAGE_WEEKS)
        rows = usage[(usage["date"] >= start) & (usage["date"] < self.cutoff)]
        # weeks before the cutoff: 0 is the last 7 days (cutoff - 7 days up to the day before the cutoff)
        ago = (np.ceil((self.cutoff - rows["date"]).dt.total_seconds().to_numpy() / 86_400) - 1) // 7
        position = self._positions(rows["account_id"])
        keep = (position >= 0) & (ago < USAGE_WEEKS)
        rows, position = rows[keep], position[keep]
        week = USAGE_WEEKS - 1 - ago[keep].astype(np.int64)
        cell = position * USAGE_WEEKS + week
        size = self.n * USAGE_WEEKS
        days = np.bincount(cell, minlength=size).reshape(self.n, USAGE_WEEKS).astype(float)
        out = {}
        for measure in USAGE_MEASURES:
            if measure not in rows:
                continue
            values = pd.to_numeric(rows[measure], errors="coerce").fillna(0).to_numpy(dtype=float)
            total = np.bincount(cell, weights=values, minlength=size).reshape(self.n, USAGE_WEEKS)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[measure] = np.where(days > 0, total / days if measure == "active_users" else total, np.nan)
        if not out:
            self.notes.append("The usage table has neither active users nor logins: the usage timeline is empty.")
        ends = [str((self.cutoff - pd.Timedelta(weeks=USAGE_WEEKS - 1 - k, days=1)).date()) for k in range(USAGE_WEEKS)]
        return out, ends

    def _support(self, tables: dict[str, pd.DataFrame]) -> _Support:
        """Every account's tickets, resolutions, CSAT/CES and NPS answers of the last SUPPORT_DAYS
        before the cutoff as dated events, and its tickets still open at the cutoff."""
        start = self.cutoff - pd.Timedelta(days=SUPPORT_DAYS)
        parts, notes = [], []
        tickets, events = tables.get("tickets"), tables.get("ticket_events")
        open_tickets = pd.DataFrame(
            columns=["position", "ticket_id", "created_at", "priority", "category", "channel", "age_days"]
        )
        if tickets is None:
            notes.append("No support data (no tickets table): the support timeline and open tickets are empty.")
        else:
            tickets = tickets[tickets["created_at"] < self.cutoff].assign(
                position=lambda t: self._positions(t["account_id"])
            )
            tickets = tickets[tickets["position"] >= 0]
            recent = tickets[tickets["created_at"] >= start]
            parts.append(
                pd.DataFrame(
                    {
                        "position": recent["position"].to_numpy(),
                        "at": _naive(recent["created_at"]),
                        "what": "ticket opened",
                        "detail": (
                            recent["ticket_id"].astype(str)
                            + ": "
                            + recent["category"].astype(str).str.replace("_", " ")
                            + ", "
                            + recent["priority"].astype(str)
                            + " priority, by "
                            + recent["channel"].astype(str)
                        ).to_numpy(),
                    }
                )
            )
            if events is None:
                notes.append("No ticket events table: resolutions and CSAT/CES are not known, every ticket looks open.")
                events = pd.DataFrame(
                    {"ticket_id": [], "at": pd.Series(dtype=tickets["created_at"].dtype), "kind": [], "value": []}
                )
            events = events[events["at"] < self.cutoff]
            owner = tickets.drop_duplicates("ticket_id")
            found = pd.Index(owner["ticket_id"].astype(str)).get_indexer(events["ticket_id"].astype(str))
            events = events[found >= 0].assign(position=owner["position"].to_numpy()[found[found >= 0]])
            kind = events["kind"]
            shown = events[(events["at"] >= start) & _one_of(kind, ("resolved", "csat", "ces", "reopened"))]
            value = shown["value"].round().astype("Int64").astype(str).replace("<NA>", "?")
            detail = np.select(
                [shown["kind"] == "csat", shown["kind"] == "ces"],
                [
                    shown["ticket_id"].astype(str) + ": satisfaction " + value + " of 5",
                    shown["ticket_id"].astype(str) + ": effort " + value + " of 7 (7 = hardest)",
                ],
                default=shown["ticket_id"].astype(str),
            )
            words = {
                "resolved": "ticket resolved",
                "csat": "CSAT answer",
                "ces": "effort score (CES)",
                "reopened": "ticket reopened",
            }
            parts.append(
                pd.DataFrame(
                    {
                        "position": shown["position"].to_numpy(),
                        "at": _naive(shown["at"]),
                        "what": shown["kind"].map(words).to_numpy(),
                        "detail": detail,
                    }
                )
            )
            # open at the cutoff: never resolved before it, or reopened after its last resolution
            last = events[_one_of(kind, ("resolved", "reopened"))].sort_values("at", kind="stable")
            state = last.groupby("ticket_id")["kind"].last()
            resolved = pd.Index(state[state == "resolved"].index.astype(str))
            still = tickets[resolved.get_indexer(tickets["ticket_id"].astype(str)) < 0]
            open_tickets = still.assign(age_days=(self.cutoff - still["created_at"]).dt.days)[open_tickets.columns]
        surveys = tables.get("surveys")
        if surveys is None:
            notes.append("No survey table: NPS answers are not shown.")
        else:
            answered = surveys[(surveys["answered_at"] < self.cutoff) & (surveys["answered_at"] >= start)]
            answered = answered.assign(position=self._positions(answered["account_id"]))
            answered = answered[answered["position"] >= 0]
            parts.append(
                pd.DataFrame(
                    {
                        "position": answered["position"].to_numpy(),
                        "at": _naive(answered["answered_at"]),
                        "what": "NPS answer",
                        "detail": ("would recommend us " + answered["score"].astype(str) + " of 10").to_numpy(),
                    }
                )
            )
        frames = [p for p in parts if len(p)]
        events_all = (
            pd.concat(frames, ignore_index=True)
            if frames
            else pd.DataFrame({"position": np.zeros(0, dtype=np.int64), "at": [], "what": [], "detail": []})
        )
        events_all = events_all.sort_values(["position", "at"], ascending=[True, False], kind="stable")
        open_tickets = open_tickets.sort_values(["position", "created_at"], kind="stable")
        bounds = np.searchsorted(events_all["position"].to_numpy(dtype=np.int64), np.arange(self.n + 1))
        open_bounds = np.searchsorted(open_tickets["position"].to_numpy(dtype=np.int64), np.arange(self.n + 1))
        return _Support(
            events_all.reset_index(drop=True), bounds, open_tickets.reset_index(drop=True), open_bounds, notes
        )

    def _outcome_inputs(self, tables: dict[str, pd.DataFrame]) -> tuple[pd.Series | None, pd.Timestamp | None, Any]:
        """What the evaluation needs from the data: churn times, the data's end (as `churn features`
        computes it) and the accounts' ARR."""
        from features.panel import TIME_COLUMNS, data_range_of

        if self.data_dir is None:
            return None, None, None
        churn = tables.get("churn")
        churned = (
            churn.assign(account_id=churn["account_id"].astype(str))
            .drop_duplicates("account_id")
            .set_index("account_id")["churned_at"]
            if churn is not None
            else pd.Series(dtype="datetime64[us, UTC]")
        )
        times = {t: tables[t][c] for t, c in TIME_COLUMNS.items() if t in tables and c in tables[t]}
        try:
            end = data_range_of(times)[1]
        except InputError:
            end = self.cutoff
        end = max(end, self.cutoff)
        accounts = tables.get("accounts")
        arr = (
            accounts.assign(account_id=accounts["account_id"].astype(str)).set_index("account_id")["arr"]
            if accounts is not None and "arr" in accounts
            else pd.Series(self.arr, index=self.ids)
        )
        return churned, end, arr

    # -- the model's side ------------------------------------------------------------------------

    def model_view(self) -> _ModelView:
        """The curves, tiers and risk history under the model the runtime serves now. A new champion
        (swapped in by the runtime) is picked up on the next request with its curves and tiers at
        once; its history under the training panel is scored on a background thread (one LightGBM
        thread, the requests keep the other core) and shows the kept daily runs meanwhile."""
        state = self.runtime.state
        view = self._model
        if view is not None and view.version == str(state.version):
            return view
        with self._lock:
            if self._model is None or self._model.version != str(state.version):
                self._model = self._build_model_view(state, None)
                threading.Thread(
                    target=self._complete_history, args=(state,), name="workspace-history", daemon=True
                ).start()
            return self._model

    def _complete_history(self, state: Any) -> None:
        notes: list[str] = []
        try:
            view = self._build_model_view(state, self._training_history(state, notes, threads=1), tuple(notes))
        except Exception:  # noqa: BLE001 - the kept runs keep serving; the next swap tries again
            return
        with self._lock:
            if self._model is not None and self._model.version == view.version:
                self._model = view

    def _build_model_view(self, state: Any, training: pd.DataFrame | None, notes: tuple[str, ...] = ()) -> _ModelView:
        """The view of one model state; `training`: its history on the training panel (None: not yet)."""
        curves = np.asarray(state.stored[0], dtype=float).reshape(-1, len(HORIZONS))
        tiers = np.array([answer[0].tier for answer in state.answers], dtype=object)
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
        position = history["position"].to_numpy(dtype=np.int64)
        return _ModelView(
            str(state.version),
            curves,
            tiers,
            position,
            history["date"].to_numpy(dtype="datetime64[D]"),
            history[list(CURVE_COLUMNS)].to_numpy(dtype=float) if len(history) else np.zeros((0, len(HORIZONS))),
            history["source"].to_numpy(dtype=object),
            tuple(notes) + tuple(self._kept_notes),
        )

    def _training_history(self, state: Any, notes: list[str], threads: int) -> pd.DataFrame | None:
        """The served model on the snapshot's accounts' rows of the panel it was trained on."""
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
        files = sorted((folder / "snapshots").glob("*.parquet"))
        model = state.model
        parts = []
        for path in files:
            import pyarrow.parquet as pq

            present = set(pq.read_schema(path).names)
            columns = [c for c in dict.fromkeys(["account_id", "cutoff", *model.features]) if c in present]
            part = pd.read_parquet(path, columns=columns)
            part = part[self._positions(part["account_id"]) >= 0]
            if len(part):
                parts.append(part)
        if not parts:
            return None
        panel = pd.concat(parts, ignore_index=True)
        curves = model.curve_matrix(model.encode(panel), num_threads=threads)
        out = pd.DataFrame(curves, columns=list(CURVE_COLUMNS))
        out["position"] = self._positions(panel["account_id"])
        out["date"] = pd.to_datetime(panel["cutoff"], utc=True).dt.tz_localize(None).dt.normalize().to_numpy()
        out["source"] = f"model {state.version} on its training data"
        out["rank"] = 0
        return out

    def _kept_history(self, notes: list[str]) -> pd.DataFrame | None:
        """The daily runs kept in <scores>/history/ (one a week, newest kept), as scored then."""
        folder = self.scores_dir / "history"
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
            part = part.assign(position=self._positions(part["account_id"]))
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

    # -- lookups -----------------------------------------------------------------------------------

    def _position(self, account_id: str) -> int:
        i = self.runtime.position.get(str(account_id))
        if i is None:
            raise NotFound(
                f"account_id {account_id!r}: not in the snapshot of {self.as_of}; check the id or search by name"
            )
        return i

    def owners(self) -> list[str]:
        return [o for o in self.owner_names if o != NO_OWNER] + ([NO_OWNER] if NO_OWNER in self.owner_names else [])

    def segments(self) -> list[str]:
        return list(self.segment_names)

    def _account_row(self, i: int, view: _ModelView) -> dict:
        curve = view.curves[i]
        renewal = self.days_to_renewal[i]
        return {
            "account_id": str(self.ids[i]),
            "account_name": str(self.names[i]),
            "segment": self.segment_names[self.segment_codes[i]],
            "csm_owner": self.owner_names[self.owner_codes[i]],
            "arr": float(self.arr[i]),
            "arr_text": charts.money(float(self.arr[i])),
            "tier": str(view.tiers[i]),
            "days_to_renewal": None if not np.isfinite(renewal) else int(renewal),
            "renewal_date": None
            if not np.isfinite(renewal)
            else str((self.cutoff + pd.Timedelta(days=float(renewal))).date()),
            **{f"p_{h}d": float(curve[k]) for k, h in enumerate(HORIZONS)},
            **{f"p_{h}d_text": charts.percent(float(curve[k])) for k, h in enumerate(HORIZONS)},
        }

    # -- the account page --------------------------------------------------------------------------

    def account(self, account_id: str) -> dict:
        """Everything the account page shows (NotFound for an id the snapshot does not hold)."""
        i = self._position(account_id)
        view = self.model_view()
        facts = self._account_row(i, view)
        curve = {h: facts[f"p_{h}d"] for h in HORIZONS}
        notes = list(self.notes)
        reasons = self._reasons(str(self.ids[i]), notes)
        history = self._history(i, view, curve)
        notes += list(view.notes) if not history["points"] or len(history["points"]) < 2 else []
        usage = self._usage_page(i)
        support = self._support_page(i)
        notes += self.support.notes
        store = self._store_page(str(self.ids[i]), notes)
        return {
            "account": facts,
            "as_of": self.as_of,
            "model_version": view.version,
            "horizons": list(HORIZONS),
            "curve": [{"horizon": h, "p": curve[h], "text": charts.percent(curve[h])} for h in HORIZONS],
            "curve_sentence": (
                f"{charts.percent(curve[30])} chance of churning within 30 days, {charts.percent(curve[90])} within "
                f"90 days and {charts.percent(curve[180])} within 180 days."
            ),
            "expected_arr_lost_90d": charts.money(facts["p_90d"] * facts["arr"]),
            "reasons": reasons,
            "history": history,
            "usage": usage,
            "support": support,
            **store,
            "charts": {
                "curve": charts.risk_curve(curve),
                "history": charts.history_line(
                    [dt.date.fromisoformat(p["date"]) for p in history["points"]],
                    [p["p"] for p in history["points"]],
                    horizon=REASONS_HORIZON,
                ),
                "waterfall": charts.waterfall(reasons["steps"], REASONS_HORIZON) if reasons["available"] else None,
                "usage": {
                    m: charts.sparkline(
                        usage["series"][m], USAGE_MEASURES[m].capitalize() + " per week", prefix=f"usage-{m}"
                    )
                    for m in usage["series"]
                },
            },
            "notes": list(dict.fromkeys(notes)),
        }

    def _reasons(self, account_id: str, notes: list[str]) -> dict:
        """The /explain answer at the reasons' horizon as a waterfall: the base rate, the drivers one
        by one (the largest by size, the others together), the context likewise, what no single
        feature carries, and the account's risk; each step in probability points."""
        from serving import schemas

        try:
            explained = self.runtime.explain(
                schemas.ExplainRequest(account_id=account_id, horizon_days=REASONS_HORIZON)
            )
        except NotFound:
            raise
        except Exception as exc:  # noqa: BLE001 - the page stands without its explanation; the reader learns why
            notes.append(f"The explanation could not be computed: {type(exc).__name__}: {exc}")
            return {"available": False, "steps": [], "raising": [], "lowering": [], "context": []}
        specs = self.runtime.specs
        base = float(explained.base_rate if explained.base_rate is not None else 0.0)
        drivers = sorted(explained.raising + explained.lowering, key=lambda r: -abs(r.points or 0))
        context = sorted(explained.context, key=lambda r: -abs(r.points or 0))
        steps = [
            {
                "label": "Typical account (the base rate)",
                "kind": "base",
                "points": base * 100,
                "start": 0.0,
                "end": base,
            }
        ]
        level = base

        def add(label: str, kind: str, pts: float, feature: str | None = None) -> None:
            nonlocal level
            steps.append(
                {
                    "label": label,
                    "kind": kind,
                    "points": pts,
                    "start": level,
                    "end": level + pts / 100,
                    "feature": feature,
                }
            )
            level += pts / 100

        for group, kind, shown in ((drivers, "driver", WATERFALL_DRIVERS), (context, "context", WATERFALL_CONTEXT)):
            for r in group[:shown]:
                label = specs[r.feature].description if r.feature in specs else r.feature
                add(label[:1].upper() + label[1:], kind, float(r.points or 0), r.feature)
            others = group[shown:]
            if others:
                word = "driver" if kind == "driver" else "context signal"
                add(
                    f"{len(others)} other {word}{'s' if len(others) > 1 else ''} together",
                    kind,
                    float(sum(r.points or 0 for r in others)),
                )
        rest = float(explained.rest_points or 0.0)
        if abs(rest) >= 0.005:
            add("Signals acting together (no single one)", "rest", rest)
        steps.append(
            {
                "label": "This account",
                "kind": "total",
                "points": explained.probability * 100,
                "start": 0.0,
                "end": explained.probability,
            }
        )

        def words(rs: list) -> list[dict]:
            return [
                {
                    "feature": r.feature,
                    "sentence": r.sentence,
                    "effect": r.effect,
                    "points": r.points,
                    "family": r.family,
                }
                for r in rs[:LISTED_REASONS]
            ]

        return {
            "available": True,
            "horizon": REASONS_HORIZON,
            "probability": explained.probability,
            "probability_text": charts.percent(explained.probability, 1),
            "base_rate": base,
            "base_rate_text": charts.percent(base, 1),
            "rest_points": rest,
            "steps": steps,
            "raising": words(explained.raising),
            "lowering": words(explained.lowering),
            "context": words(context),
            "model_version": explained.model_version,
        }

    def _history(self, i: int, view: _ModelView, curve: dict[int, float]) -> dict:
        lo, hi = np.searchsorted(view.history_position, [i, i + 1])
        k = HORIZONS.index(REASONS_HORIZON)
        points = [
            {"date": str(d), "p": float(p[k]), "text": charts.percent(float(p[k])), "source": str(s)}
            for d, p, s in zip(
                view.history_dates[lo:hi], view.history_curves[lo:hi], view.history_source[lo:hi], strict=True
            )
        ]
        points.append(
            {
                "date": self.as_of,
                "p": curve[REASONS_HORIZON],
                "text": charts.percent(curve[REASONS_HORIZON]),
                "source": "now",
            }
        )
        sources = sorted({p["source"] for p in points[:-1]})
        return {"points": points, "horizon": REASONS_HORIZON, "sources": sources}

    def _usage_page(self, i: int) -> dict:
        series = {m: [None if not np.isfinite(v) else float(v) for v in matrix[i]] for m, matrix in self.usage.items()}
        has = {m: s for m, s in series.items() if any(v is not None for v in s)}
        weeks = [
            {"week_ending": end, **{m: (None if s[k] is None else round(s[k], 1)) for m, s in has.items()}}
            for k, end in enumerate(self.usage_labels)
        ]
        return {
            "available": bool(has),
            "series": has,
            "labels": {m: USAGE_MEASURES[m] for m in has},
            "weeks": weeks[::-1],
            "note": None if has else "No usage recorded for this account in the last 26 weeks.",
        }

    def _support_page(self, i: int) -> dict:
        s = self.support
        events = s.events.iloc[s.event_bounds[i] : s.event_bounds[i + 1]]
        tickets = s.open_tickets.iloc[s.open_bounds[i] : s.open_bounds[i + 1]]
        csat = events[events["what"] == "CSAT answer"]
        opened = int((events["what"] == "ticket opened").sum())
        return {
            "available": not s.notes or len(events) > 0,
            "events": [
                {"at": _date(at), "what": what, "detail": detail}
                for at, what, detail in zip(
                    events["at"].head(SUPPORT_EVENTS),
                    events["what"].head(SUPPORT_EVENTS),
                    events["detail"].head(SUPPORT_EVENTS),
                    strict=True,
                )
            ],
            "more": max(len(events) - SUPPORT_EVENTS, 0),
            "tickets_opened": opened,
            "csat_answers": len(csat),
            "days": SUPPORT_DAYS,
            "open_tickets": [
                {
                    "ticket_id": str(t.ticket_id),
                    "opened": _date(t.created_at),
                    "age_days": int(t.age_days),
                    "priority": str(t.priority),
                    "category": str(t.category).replace("_", " "),
                    "channel": str(t.channel),
                }
                for t in tickets.itertuples(index=False)
            ],
        }

    def _store_page(self, account_id: str, notes: list[str]) -> dict:
        """The account's escalations (newest first) with their status history, follow-ups and
        ratings, the latest handoff package and which escalation the page's forms act on."""
        empty = {
            "escalations": [],
            "handoff": None,
            "ratings": [],
            "actions": {"rate": None, "resolve": None, "acknowledge": None},
        }
        if self.store is None:
            notes.append("No operational store is configured: escalations and ratings cannot be shown.")
            return empty
        from sqlalchemy import select
        from sqlalchemy.exc import SQLAlchemyError

        from escalation.store import ACTIVE, EscalationRow, FeedbackRow, FollowUpRow, StatusChangeRow

        try:
            with self.store.engine.connect() as connection:
                rows = (
                    connection.execute(
                        select(EscalationRow.__table__)
                        .where(EscalationRow.account_id == account_id)
                        .order_by(EscalationRow.opened_at.desc(), EscalationRow.id.desc())
                    )
                    .mappings()
                    .all()
                )
                ids = [r["id"] for r in rows]
                changes = (
                    connection.execute(
                        select(StatusChangeRow.__table__)
                        .where(StatusChangeRow.escalation_id.in_(ids))
                        .order_by(StatusChangeRow.at, StatusChangeRow.id)
                    )
                    .mappings()
                    .all()
                    if ids
                    else []
                )
                ratings = (
                    connection.execute(
                        select(FeedbackRow.__table__)
                        .where(FeedbackRow.escalation_id.in_(ids))
                        .order_by(FeedbackRow.created_at.desc(), FeedbackRow.id.desc())
                    )
                    .mappings()
                    .all()
                    if ids
                    else []
                )
                follow_ups = (
                    connection.execute(
                        select(FollowUpRow.__table__)
                        .where(FollowUpRow.escalation_id.in_(ids))
                        .order_by(FollowUpRow.due_at, FollowUpRow.id)
                    )
                    .mappings()
                    .all()
                    if ids
                    else []
                )
        except SQLAlchemyError as exc:
            notes.append(f"The operational store could not be read ({type(exc).__name__}): escalations are not shown.")
            return empty
        now = dt.datetime.now(dt.UTC)
        by_escalation: dict[int, list] = {}
        for c in changes:
            by_escalation.setdefault(c["escalation_id"], []).append(
                {
                    "at": _minute(c["at"]),
                    "from": c["from_status"],
                    "to": c["to_status"],
                    "by": c["actor"],
                    "outcome": OUTCOME_WORDS.get(c["outcome"]) if c["outcome"] else None,
                    "note": c["note"],
                }
            )
        rated: dict[int, list] = {}
        for r in ratings:
            rated.setdefault(r["escalation_id"], []).append(
                {
                    "escalation_id": r["escalation_id"],
                    "rating": r["rating"],
                    "comment": r["comment"],
                    "outcome": OUTCOME_WORDS.get(r["outcome"], r["outcome"]),
                    "at": _minute(r["created_at"]),
                }
            )
        pending: dict[int, Any] = {}
        for f in follow_ups:
            if f["done_at"] is None:
                pending.setdefault(f["escalation_id"], f["due_at"])
        escalations = []
        for r in rows:
            respond_by = r["respond_by"]
            overdue = r["status"] == "open" and respond_by is not None and respond_by <= now
            escalations.append(
                {
                    "id": r["id"],
                    "reason": str(r["reason"]).replace("_", " "),
                    "band": r["band"],
                    "queue": r["queue"],
                    "owner": r["owner"],
                    "status": r["status"],
                    "active": r["status"] in ACTIVE,
                    "opened": _minute(r["opened_at"]),
                    "respond_by": _minute(respond_by),
                    "overdue": overdue,
                    "occurrences": r["occurrences"],
                    "ticket_id": r["ticket_id"],
                    "outcome": OUTCOME_WORDS.get(r["outcome"]) if r["outcome"] else None,
                    "follow_up_due": _minute(pending.get(r["id"])),
                    "history": by_escalation.get(r["id"], []),
                    "ratings": rated.get(r["id"], []),
                    "has_package": bool(r["package"]),
                }
            )
        latest = next((r for r in rows if r["package"]), None)
        active = next((e for e in escalations if e["active"]), None)
        return {
            "escalations": escalations,
            "handoff": self._handoff(latest) if latest is not None else None,
            "ratings": [x for r in escalations for x in r["ratings"]],
            "actions": {
                "rate": latest["id"] if latest is not None else (escalations[0]["id"] if escalations else None),
                "resolve": active["id"] if active else None,
                "acknowledge": active["id"] if active and active["status"] == "open" else None,
            },
        }

    @staticmethod
    def _handoff(row: Any) -> dict:
        """The parts of a stored handoff package CS reads first (escalation/handoff/form.py)."""
        package = row["package"] or {}
        form = package.get("form") or {
            k: v for k, v in package.items() if k not in ("summary", "warm_handoff", "markdown")
        }
        issue, needed = form.get("issue") or {}, form.get("what_is_needed") or {}
        state, impact = form.get("customer_state") or {}, form.get("business_impact") or {}
        effort = state.get("effort") or {}
        return {
            "escalation_id": row["id"],
            "opened": _minute(row["opened_at"]),
            "summary": package.get("summary"),
            "warm_handoff": package.get("warm_handoff"),
            "ticket": {k: issue.get(k) for k in ("ticket_id", "subject", "category", "priority")},
            "timeline": issue.get("timeline") or [],
            "tried": issue.get("tried") or [],
            "promised": issue.get("promised") or [],
            "specifics": issue.get("technical_specifics") or {},
            "recommended_action": needed.get("recommended_action"),
            "other_actions": needed.get("other_actions") or [],
            "success": needed.get("success") or {},
            "respond_by": needed.get("respond_by"),
            "follow_up_due": needed.get("follow_up_due"),
            "sentiment": state.get("sentiment_label"),
            "drift": state.get("drift_label"),
            "frustrated": state.get("frustrated"),
            "asks": effort.get("asks"),
            "critical_moments": effort.get("critical_categories") or [],
            "top_reasons": impact.get("top_reasons") or [],
            "markdown": package.get("markdown"),
        }

    # -- the book view -----------------------------------------------------------------------------

    def _filter(self, segment: str | None, owner: str | None, notes: list[str]) -> np.ndarray:
        """The accounts a segment and an owner keep; a value no account has keeps none, and the page
        says which values there are."""
        mask = np.ones(self.n, dtype=bool)
        for value, names, codes, flag in (
            (segment, self.segment_names, self.segment_codes, "segment"),
            (owner, self.owner_names, self.owner_codes, "owner"),
        ):
            if value is None:
                continue
            if value not in names:
                notes.append(
                    f"{flag} {value!r}: no account in the snapshot has it; expected one of {', '.join(names)}."
                )
                return np.zeros(self.n, dtype=bool)
            mask &= codes == names.index(value)
        return mask

    def book(self, segment: str | None = None, owner: str | None = None, horizon: int = 90) -> dict:
        """Accounts and ARR at risk (expected churners = sum of p, expected ARR lost = sum of p x ARR)
        by horizon, segment and owner for the accounts the filters keep; the escalation funnel of
        those accounts; the store's outcomes, held-out comparison and ratings; model health."""
        try:
            horizon = int(horizon)
        except (TypeError, ValueError):
            raise InputError(f"horizon {horizon!r}: expected one of {list(HORIZONS)} (days)") from None
        if horizon not in HORIZONS:
            raise InputError(f"horizon {horizon}: expected one of {list(HORIZONS)} (days)")
        segment = str(segment).strip() or None if segment is not None else None
        owner = str(owner).strip() or None if owner is not None else None
        notes = list(self.notes)
        mask = self._filter(segment, owner, notes)
        view = self.model_view()
        k = HORIZONS.index(horizon)
        P, arr = view.curves[mask], self.arr[mask]
        expected, lost = P.sum(axis=0), (P * arr[:, None]).sum(axis=0)
        total_arr = float(arr.sum())
        by_horizon = [
            {
                "horizon": h,
                "expected_churners": float(expected[j]),
                "expected_churners_text": f"{expected[j]:,.1f}",
                "expected_arr_lost": float(lost[j]),
                "expected_arr_lost_text": charts.money(float(lost[j])),
                "share_text": charts.percent(float(lost[j]) / total_arr, 1) if total_arr else "-",
            }
            for j, h in enumerate(HORIZONS)
        ]
        by_segment = self._groups(mask, view, k, self.segment_codes, self.segment_names, "segment")
        by_owner = self._groups(mask, view, k, self.owner_codes, self.owner_names, "owner")
        bands = {b: int((view.tiers[mask] == b).sum()) for b in BANDS[::-1]}
        evaluation = self._evaluation_view(mask, view, notes)
        return {
            "as_of": self.as_of,
            "model_version": view.version,
            "horizon": horizon,
            "horizons": list(HORIZONS),
            "filters": {"segment": segment, "owner": owner, "horizon": horizon},
            "segments": self.segments(),
            "owners": self.owners(),
            "totals": {
                "accounts": int(mask.sum()),
                "arr": total_arr,
                "arr_text": charts.money(total_arr),
                "expected_churners": float(expected[k]),
                "expected_churners_text": f"{expected[k]:,.1f}",
                "expected_arr_lost": float(lost[k]),
                "expected_arr_lost_text": charts.money(float(lost[k])),
                "share_text": charts.percent(float(lost[k]) / total_arr, 1) if total_arr else "-",
            },
            "by_horizon": by_horizon,
            "by_segment": by_segment,
            "by_owner": by_owner,
            "bands": bands,
            "top_accounts": self._top_accounts(mask, view, k),
            **evaluation,
            "health": self._health(),
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
                    [(r["owner"], r["expected_arr_lost"], r["expected_arr_lost_text"]) for r in by_owner[:12]],
                    f"ARR expected to churn within {horizon} days, by owner (the 12 largest)",
                    prefix="bars-owner",
                ),
            },
            "notes": list(dict.fromkeys(notes)),
        }

    def _groups(
        self, mask: np.ndarray, view: _ModelView, k: int, codes: np.ndarray, names: list[str], key: str
    ) -> list[dict]:
        """Accounts, ARR, expected churners and ARR lost at horizon k per code, largest loss first."""
        c = codes[mask]
        size = len(names)
        p = view.curves[mask, k]
        arr = self.arr[mask]
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
                "arr_text": charts.money(float(arr_sum[j])),
                "expected_churners": float(churners[j]),
                "expected_churners_text": f"{churners[j]:,.1f}",
                "expected_arr_lost": float(lost[j]),
                "expected_arr_lost_text": charts.money(float(lost[j])),
                "flagged": int(flagged[j]),
            }
            for j in order
            if accounts[j]
        ]

    def _top_accounts(self, mask: np.ndarray, view: _ModelView, k: int) -> list[dict]:
        """The accounts with the most ARR expected to churn at the horizon, with their first reason."""
        where = np.flatnonzero(mask)
        lost = view.curves[where, k] * self.arr[where]
        if len(where) > TOP_ACCOUNTS:
            pick = np.argpartition(-lost, TOP_ACCOUNTS)[:TOP_ACCOUNTS]
            where, lost = where[pick], lost[pick]
        order = np.argsort(-lost, kind="stable")
        answers = self.runtime.state.answers
        out = []
        for i, value in zip(where[order], lost[order], strict=True):
            row = self._account_row(int(i), view)
            score = answers[int(i)][0] if int(i) < len(answers) else None
            reason = score.top_reasons[0] if score is not None and score.top_reasons else None
            out.append(
                {
                    **row,
                    "p": float(view.curves[i, k]),
                    "p_text": charts.percent(float(view.curves[i, k])),
                    "expected_arr_lost_text": charts.money(float(value)),
                    "reason": None if reason is None else f"{reason.sentence} ({reason.effect})",
                }
            )
        return out

    def _store_signature(self) -> tuple | None:
        """A cheap fingerprint of what the evaluation reads: it changes with every write that matters."""
        from sqlalchemy import func, select

        from escalation.store import DecisionRow, EscalationRow, FeedbackRow, StatusChangeRow

        query = select(
            select(func.count()).select_from(EscalationRow).scalar_subquery(),
            select(func.max(EscalationRow.updated_at)).scalar_subquery(),
            select(func.count()).select_from(StatusChangeRow).scalar_subquery(),
            select(func.count()).select_from(FeedbackRow).scalar_subquery(),
            select(func.count()).select_from(DecisionRow).scalar_subquery(),
        )
        with self.store.engine.connect() as connection:
            return tuple(str(v) for v in connection.execute(query).one())

    def _store_view(self, notes: list[str]) -> _StoreView | None:
        """What the book reads from the store, rebuilt only when the store changed since the last
        request: each escalation's account, status, outcome and whether it was acknowledged (for the
        funnel of any filter), and the whole store's evaluation, held-out comparison and ratings."""
        from sqlalchemy.exc import SQLAlchemyError

        from escalation.evaluation import NO_QUEUE, evaluate_escalations, rating_table, read_store

        if self.store is None:
            notes.append("No operational store is configured: there is no escalation funnel or outcome to show.")
            return None
        try:
            signature = self._store_signature()
            cached = self._store_cache
            if cached is not None and cached.signature == signature:
                return cached
            tables = read_store(self.store)
        except SQLAlchemyError as exc:
            notes.append(f"The operational store could not be read ({type(exc).__name__}): no funnel or outcomes.")
            return None
        if self.churned_at is None or self.data_end is None:
            block = {
                "available": False,
                "note": "the data folder the scores came from is not there: what happened after each escalation is unknown",
            }
        else:
            block = evaluate_escalations(tables, self.churned_at, self.data_end, arr_by_account=self.arr_by_account)
        e = tables.escalations
        changes = tables.status_changes
        acknowledged = pd.Index(changes.loc[changes["to_status"] == "acknowledged", "escalation_id"].unique())
        base = e.assign(queue=e["queue"].fillna(NO_QUEUE), owner=e["owner"].fillna(NO_OWNER))
        ratings = {
            by: [
                {
                    by: str(r[by]),
                    "rating_mean": float(r["rating_mean"]),
                    "rating_text": f"{r['rating_mean']:.1f} of 5",
                    "ratings": int(r["ratings"]),
                }
                for r in rating_table(base, tables.feedback, by).to_dict("records")
            ]
            for by in ("queue", "owner")
        }
        view = _StoreView(
            signature=signature,
            position=self._positions(e["account_id"]) if len(e) else np.zeros(0, dtype=np.int64),
            account_ids=e["account_id"].astype(str).to_numpy(dtype=object),
            status=e["status"].astype(str).to_numpy(dtype=object),
            outcome=e["outcome"].astype(object).where(e["outcome"].notna(), "").to_numpy(dtype=object),
            acknowledged=acknowledged.get_indexer(e["id"]) >= 0 if len(e) else np.zeros(0, dtype=bool),
            respond_by=_naive(e["respond_by"]) if len(e) else np.zeros(0, dtype="datetime64[ns]"),
            block=block,
            ratings=ratings,
        )
        self._store_cache = view
        return view

    def _evaluation_view(self, mask: np.ndarray, view: _ModelView, notes: list[str]) -> dict:
        """The escalation funnel of the filtered accounts, and the whole store's outcomes, held-out
        comparison and ratings by queue and owner."""
        from escalation.store import ACTIVE

        store = self._store_view(notes)
        if store is None:
            return {"funnel": None, "outcomes": None, "holdout": None, "ratings": None}
        keep = np.ones(len(store.position), dtype=bool)
        if not mask.all():
            keep = (store.position >= 0) & mask[np.maximum(store.position, 0)]
        status, outcome = store.status[keep], store.outcome[keep]
        now = np.datetime64(dt.datetime.now(dt.UTC).replace(tzinfo=None), "ns")
        funnel = {
            "flagged": int((view.tiers[mask] != "none").sum()),
            "escalated": int(keep.sum()),
            "accounts_escalated": len(np.unique(store.account_ids[keep])),
            "acknowledged": int(store.acknowledged[keep].sum()),
            "resolved": int((status == "resolved").sum()),
            "expired": int((status == "expired").sum()),
            "active": int(np.isin(status, ACTIVE).sum()),
            "overdue": int(((status == "open") & (store.respond_by[keep] <= now)).sum()),
            "outcomes": [
                {"outcome": OUTCOME_WORDS[o], "count": int((outcome == o).sum())}
                for o in ("saved", "churned", "not_at_risk")
            ],
        }
        block = store.block
        overall = block.get("overall") if block.get("available") else None
        holdout = block.get("holdout") if block.get("available") else None
        outcome_lines = None
        if overall:
            h = block["horizon_days"]
            outcome_lines = {
                "horizon": h,
                "escalations": block["escalations"],
                "matured": overall["matured"],
                "really_at_risk": _share(overall["at_risk"], overall["matured"]),
                "churned": _share(overall["churned"], overall["matured"]),
                "arr_saved_text": charts.money(overall["arr_saved"]),
                "arr_at_stake_text": charts.money(overall["arr_at_stake"]),
                "ack_median": _minutes(overall.get("ack_median_minutes")),
                "ack_in_time": charts.percent(overall.get("ack_within_window_share")),
                "data_end": str(block.get("data_end", ""))[:10],
                "notes": block.get("notes", []),
            }
        elif block.get("note"):
            notes.append(f"Escalation outcomes: {block['note']}.")
        return {
            "funnel": funnel,
            "outcomes": outcome_lines,
            "holdout": None
            if holdout is None
            else {
                "verdict": holdout.get("verdict"),
                "enough": bool(holdout.get("enough")),
                "treated": holdout.get("treated"),
                "held_out": holdout.get("held_out"),
                "churn_treated": charts.percent(holdout.get("churn_treated")),
                "churn_held_out": charts.percent(holdout.get("churn_held_out")),
                "horizon": holdout.get("horizon_days"),
            },
            "ratings": store.ratings,
        }

    def _health(self) -> dict:
        """Backtest ROC-AUC and calibration error per horizon from the served model's logged metrics,
        and drift from the latest monitoring run."""
        metrics = self.runtime.state.metrics or {}

        def metric(model: str, name: str, h: int) -> float | None:
            return _float(metrics.get(f"backtest.{model}.{name}_{h}d"))

        rows = [
            {
                "horizon": h,
                "roc_auc": metric("lightgbm", "roc_auc", h),
                "roc_auc_text": "-"
                if metric("lightgbm", "roc_auc", h) is None
                else f"{metric('lightgbm', 'roc_auc', h):.2f}",
                "rules_roc_auc_text": "-"
                if metric("rules", "roc_auc", h) is None
                else f"{metric('rules', 'roc_auc', h):.2f}",
                "ece": metric("lightgbm", "ece", h),
                "ece_text": "-" if metric("lightgbm", "ece", h) is None else f"{metric('lightgbm', 'ece', h):.3f}",
            }
            for h in HORIZONS
        ]
        drift = None
        monitors = self.monitoring.get("monitors") if self.monitoring else None
        if monitors:
            words = {
                "ok": "stable",
                "breach": "needs attention",
                "not_enough_data": "not enough data yet",
                "unavailable": "not measured",
            }
            drift = {
                "as_of": self.monitoring.get("as_of"),
                "model_version": self.monitoring.get("model_version"),
                "monitors": [
                    {
                        "monitor": str(m.get("monitor", "")).replace("_", " "),
                        "state": m.get("state"),
                        "state_text": words.get(m.get("state"), m.get("state")),
                        "summary": m.get("summary"),
                    }
                    for m in monitors
                ],
            }
        return {
            "model_version": str(self.runtime.state.version),
            "backtest": rows,
            "has_backtest": any(r["roc_auc"] is not None or r["ece"] is not None for r in rows),
            "drift": drift,
            "drift_note": None
            if drift
            else f"No monitoring run was found beside the scores ({self.scores_dir / 'monitoring.json'}): drift is not measured.",
        }

    # -- search ----------------------------------------------------------------------------------

    def search(self, query: str, limit: int = SEARCH_LIMIT) -> list[dict]:
        """Accounts whose id or name contains `query` (case-insensitive), best first: the exact id,
        then ids and names starting with it, then names with a word starting with it, then any other
        match; ties by the 90-day risk, highest first."""
        q = str(query or "").strip().lower()
        if not q or limit <= 0:
            return []
        ids, names = self._search_ids, self._search_names
        in_id = ids.str.contains(q, regex=False).to_numpy()
        in_name = names.str.contains(q, regex=False).to_numpy()
        hit = np.flatnonzero(in_id | in_name)
        if not len(hit):
            return []
        hit_ids, hit_names = ids.iloc[hit], names.iloc[hit]
        rank = np.full(len(hit), 4)
        rank = np.where(hit_names.str.contains(r"\b" + _escape(q), regex=True).to_numpy(), 3, rank)
        rank = np.where(hit_names.str.startswith(q).to_numpy(), 2, rank)
        rank = np.where(hit_ids.str.startswith(q).to_numpy(), 1, rank)
        rank = np.where((hit_ids == q).to_numpy(), 0, rank)
        view = self.model_view()
        risk = view.curves[hit, HORIZONS.index(90)]
        order = np.lexsort((-risk, rank))[:limit]
        out = []
        for j in order:
            row = self._account_row(int(hit[j]), view)
            out.append(
                {
                    key: row[key]
                    for key in (
                        "account_id",
                        "account_name",
                        "segment",
                        "csm_owner",
                        "p_90d",
                        "p_90d_text",
                        "tier",
                        "arr_text",
                    )
                }
            )
        return out


def _naive(times: pd.Series) -> np.ndarray:
    """UTC times as naive datetime64 (numpy keeps them as numbers; aware ones become objects)."""
    return pd.to_datetime(times, utc=True).dt.tz_localize(None).to_numpy()


def _one_of(values: pd.Series, allowed: tuple[str, ...]) -> np.ndarray:
    """values.isin(allowed) for a few allowed values, by comparison (fast on Arrow-backed text)."""
    out = np.zeros(len(values), dtype=bool)
    for value in allowed:
        out |= (values == value).fillna(False).to_numpy(dtype=bool)
    return out


def _escape(text: str) -> str:
    import re

    return re.escape(text)


def _share(part: float | None, whole: float | None) -> str:
    return "-" if not whole or part is None else f"{part:.0f} of {whole:.0f} ({part / whole:.0%})"


def _minutes(value: float | None) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    return f"{value / 60:.1f} hours" if value >= 120 else f"{value:.0f} minutes"
