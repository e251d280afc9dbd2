"""What every feature family receives: the validated tables, the snapshots, the parameters, and
shared, lazily built indexes (built once per panel, reused by every family that needs them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from core.config.features import FeatureParams
from features.timeline import DAY, EventIndex, to_seconds


class FeatureContext:
    """Inputs of the feature builders; snapshot arrays are aligned with `snapshots` rows."""

    def __init__(self, tables: dict[str, pd.DataFrame], snapshots: pd.DataFrame, params: FeatureParams):
        self.tables = tables
        self.params = params
        self.snapshots = snapshots.reset_index(drop=True)
        self.accounts = tables["accounts"].reset_index(drop=True)
        self.account_index = pd.Index(self.accounts["account_id"])
        self.acc = self.account_index.get_indexer(self.snapshots["account_id"]).astype(np.int64)
        self.cut_s = to_seconds(self.snapshots["cutoff"])
        self.cut_day = self.cut_s // DAY
        self._cache: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self.snapshots)

    def code(self, account_id: pd.Series) -> np.ndarray:
        return self.account_index.get_indexer(account_id).astype(np.int64)

    def cached(self, key: str, build: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def tickets(self) -> pd.DataFrame:
        """Tickets with account code and creation time in seconds, sorted by (account, time)."""

        def build() -> pd.DataFrame:
            t = self.tables["tickets"]
            out = pd.DataFrame(
                {
                    "ticket_id": t["ticket_id"].to_numpy(),
                    "acc": self.code(t["account_id"]),
                    "created_s": to_seconds(t["created_at"]),
                    "category": t["category"].to_numpy(),
                    "priority": t["priority"].to_numpy(),
                    "channel": t["channel"].to_numpy(),
                }
            )
            return out.sort_values(["acc", "created_s", "ticket_id"], kind="stable").reset_index(drop=True)

        return self.cached("tickets", build)

    def ticket_events(self) -> pd.DataFrame:
        """Ticket events joined to their ticket's account and creation time (seconds)."""

        def build() -> pd.DataFrame:
            e = self.tables["ticket_events"]
            t = self.tickets()[["ticket_id", "acc", "created_s"]]
            out = pd.DataFrame(
                {
                    "ticket_id": e["ticket_id"].to_numpy(),
                    "at_s": to_seconds(e["at"]),
                    "kind": e["kind"].to_numpy(),
                    "value": e["value"].to_numpy(dtype="float64", na_value=np.nan),
                }
            )
            return out.merge(t, on="ticket_id", how="inner")

        return self.cached("ticket_events", build)

    def messages(self) -> pd.DataFrame:
        def build() -> pd.DataFrame:
            m = self.tables["ticket_messages"]
            t = self.tickets()[["ticket_id", "acc"]]
            out = pd.DataFrame(
                {
                    "ticket_id": m["ticket_id"].to_numpy(),
                    "sent_s": to_seconds(m["sent_at"]),
                    "author": m["author"].to_numpy(),
                }
            )
            return out.merge(t, on="ticket_id", how="inner")

        return self.cached("messages", build)

    def account_events(self, kind: str) -> EventIndex:
        """Index of one kind of account event (built once, shared by the families that read it)."""

        def build() -> EventIndex:
            e = self.tables["account_events"]
            rows = e[e["kind"] == kind]
            return EventIndex(self.code(rows["account_id"]), to_seconds(rows["at"]))

        return self.cached(f"account_events:{kind}", build)
