"""What the workspace's account page, book view and search show, as plain dicts and lists for the
templates (serving/workspace/templates/), from what the platform already keeps:

- the served model and the latest scored snapshot (the API's `ServingRuntime`): the risk curve, the
  tier, and the reasons in probability points (`ServingRuntime.explain`, the numbers /explain gives);
- the risk history (history.py): the served model on the account's rows of its training panel,
  then the daily runs `churn score` keeps;
- the data folder the snapshot was scored from (sources.py, timelines.py): weekly usage, tickets
  with their CSAT/CES, NPS answers and the churn table, cut at the snapshot's cutoff like its features;
- the operational store: escalations with their status history and handoff packages, follow-ups,
  ratings (account.py), and escalation/evaluation.py's outcome and held-out comparison (book.py);
- the model's logged backtest metrics and the latest `monitoring.json` (drift; book.py).

Every source may be missing (no support tables, no training panel, an unreadable store): each gap
becomes a short sentence in the page's `notes`, never an exception.

Cost. Everything shared by requests is computed once per snapshot at construction (accounts as
arrays with integer codes for segment and owner, weekly usage as a dense matrix, support events and
open tickets sorted by account) and once per model version (curves, tiers, the history under that
model), so a request is a slice, a few `bincount`s and, for the account page, one /explain and four
small store queries. The store's evaluation is recomputed only when the store changed.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.settings import Settings
from core.vocabulary import HORIZONS
from escalation.evaluation import NO_OWNER
from serving.runtime import NotFound
from serving.workspace.data import sources, timelines
from serving.workspace.data.account import account_page
from serving.workspace.data.book import book_page
from serving.workspace.data.evaluation import StoreViews
from serving.workspace.data.history import ModelView, ModelViews
from serving.workspace.data.search import SEARCH_LIMIT, search
from serving.workspace.format import money, percent


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
        self.scores_dir = Path(settings.scores_dir or Path(settings.data_dir) / "scores")
        self.summary = sources.read_json(self.scores_dir / "score_summary.json")
        frame = runtime.frame
        self.ids = frame["account_id"].astype(str).to_numpy()
        self.n = len(self.ids)
        self.index = pd.Index(self.ids)
        self.cutoff = sources.utc(frame["cutoff"].max()) if self.n else pd.Timestamp.now(tz="UTC").normalize()
        self.as_of = str(self.cutoff.date())
        self.notes: list[str] = []
        self.data_dir = sources.find_data_dir(self.summary, settings, self.notes)
        names = sources.text_column(frame, "account_name", "").astype(object)
        self.names = np.where(names == "", self.ids, names)
        self.segment_codes, self.segment_names = sources.codes(
            sources.text_column(frame, "segment", sources.NO_SEGMENT)
        )
        self.owner_codes, self.owner_names = sources.codes(sources.text_column(frame, "csm_owner", NO_OWNER))
        self.arr = (
            pd.to_numeric(frame["arr_current"], errors="coerce").fillna(0.0).to_numpy(dtype=float)
            if "arr_current" in frame
            else np.zeros(self.n)
        )
        self.days_to_renewal = (
            pd.to_numeric(frame["days_to_renewal"], errors="coerce").to_numpy(dtype=float)
            if "days_to_renewal" in frame
            else np.full(self.n, np.nan)
        )
        # search keys, lower case once
        self.search_ids = pd.Series(self.ids).str.lower()
        self.search_names = pd.Series(self.names.astype(str)).str.lower()
        tables = sources.read_tables(self.data_dir, self.cutoff, self.notes)
        self.usage = timelines.usage(
            tables.get("usage_daily"), self.index, self.cutoff, self.data_dir is not None, self.notes
        )
        self.support = timelines.support(tables, self.index, self.cutoff)
        self.store_views = StoreViews(
            self.store, self.index, sources.outcome_inputs(tables, self.data_dir, self.cutoff, self.ids, self.arr)
        )
        self.monitoring = sources.read_json(self.scores_dir / "monitoring.json")
        self.models = ModelViews(runtime, self.index, self.cutoff, self.scores_dir, self.summary)
        with contextlib.suppress(Exception):  # the first book request must not pay for the imports and reads
            self.store_views.current([])

    # -- the pages -------------------------------------------------------------------------------

    def account(self, account_id: str) -> dict:
        """Everything the account page shows (NotFound for an id the snapshot does not hold)."""
        return account_page(self, account_id)

    def book(self, segment: str | None = None, owner: str | None = None, horizon: int = 90) -> dict:
        """Accounts and ARR at risk by horizon, segment and owner for the accounts the filters keep;
        the escalation funnel of those accounts; the store's outcomes, held-out comparison and
        ratings; model health (book.py)."""
        return book_page(self, segment, owner, horizon)

    def search(self, query: str, limit: int = SEARCH_LIMIT) -> list[dict]:
        """Accounts whose id or name contains `query`, best first (search.py)."""
        return search(self, query, limit)

    def owners(self) -> list[str]:
        return [o for o in self.owner_names if o != NO_OWNER] + ([NO_OWNER] if NO_OWNER in self.owner_names else [])

    def segments(self) -> list[str]:
        return list(self.segment_names)

    # -- what the pages share ----------------------------------------------------------------------

    def model_view(self) -> ModelView:
        """The curves, tiers and risk history under the model the runtime serves now (history.py)."""
        return self.models.current()

    def position(self, account_id: str) -> int:
        """The account's position in the snapshot; NotFound for an id it does not hold."""
        i = self.runtime.position.get(str(account_id))
        if i is None:
            raise NotFound(
                f"account_id {account_id!r}: not in the snapshot of {self.as_of}; check the id or search by name"
            )
        return i

    def row(self, i: int, view: ModelView) -> dict:
        """Account i's facts and risk curve, with their words."""
        curve = view.curves[i]
        renewal = self.days_to_renewal[i]
        return {
            "account_id": str(self.ids[i]),
            "account_name": str(self.names[i]),
            "segment": self.segment_names[self.segment_codes[i]],
            "csm_owner": self.owner_names[self.owner_codes[i]],
            "arr": float(self.arr[i]),
            "arr_text": money(float(self.arr[i])),
            "tier": str(view.tiers[i]),
            "risk_tier": str(view.risk_tiers[i]),
            "days_to_renewal": None if not np.isfinite(renewal) else int(renewal),
            "renewal_date": None
            if not np.isfinite(renewal)
            else str((self.cutoff + pd.Timedelta(days=float(renewal))).date()),
            **{f"p_{h}d": float(curve[k]) for k, h in enumerate(HORIZONS)},
            **{f"p_{h}d_text": percent(float(curve[k])) for k, h in enumerate(HORIZONS)},
        }
