"""Search by account id or name: a case-insensitive substring over keys lower-cased once per
snapshot, ranked best first."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

from core.vocabulary import HORIZONS

if TYPE_CHECKING:
    from serving.workspace.data import WorkspaceData

SEARCH_LIMIT = 20
#: what a search result carries of an account's row
FIELDS = ("account_id", "account_name", "segment", "csm_owner", "p_90d", "p_90d_text", "tier", "arr_text")


def search(data: WorkspaceData, query: str, limit: int = SEARCH_LIMIT) -> list[dict]:
    """Accounts whose id or name contains `query` (case-insensitive), best first: the exact id,
    then ids and names starting with it, then names with a word starting with it, then any other
    match; ties by the 90-day risk, highest first."""
    q = str(query or "").strip().lower()
    if not q or limit <= 0:
        return []
    ids, names = data.search_ids, data.search_names
    in_id = ids.str.contains(q, regex=False).to_numpy()
    in_name = names.str.contains(q, regex=False).to_numpy()
    hit = np.flatnonzero(in_id | in_name)
    if not len(hit):
        return []
    hit_ids, hit_names = ids.iloc[hit], names.iloc[hit]
    rank = np.full(len(hit), 4)
    rank = np.where(hit_names.str.contains(r"\b" + re.escape(q), regex=True).to_numpy(), 3, rank)
    rank = np.where(hit_names.str.startswith(q).to_numpy(), 2, rank)
    rank = np.where(hit_ids.str.startswith(q).to_numpy(), 1, rank)
    rank = np.where((hit_ids == q).to_numpy(), 0, rank)
    view = data.model_view()
    risk = view.curves[hit, HORIZONS.index(90)]
    order = np.lexsort((-risk, rank))[:limit]
    return [{key: row[key] for key in FIELDS} for row in (data.row(int(hit[j]), view) for j in order)]
