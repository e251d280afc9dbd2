"""Per-message text signals, each known when the message is sent (it looks only at earlier
messages), so account-level aggregates at a cutoff stay point-in-time.

- sentiment score in [-1, 1] and label (customer and agent messages);
- critical moment category (customer messages);
- rephrase: a customer message whose embedding is close to an earlier customer message of the
  same ticket, i.e. the same question asked again; `asks` counts how many times the ticket's
  question has been asked so far (3 = first-contact-resolution failure);
- repeat_across: a ticket's opening message close to the opening of another ticket of the same
  account in the previous `repeat_window_days` days;
- drift: sentiment minus the ticket's first customer message (frustration building up).

Similarities are computed with shifted row-wise dot products over messages sorted by ticket (or
account) and time, so there is no per-ticket Python loop.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.config.features import SignalParams
from features.text.critical import detect_critical

COLUMNS = [
    "message_id",
    "ticket_id",
    "account_id",
    "sent_at",
    "author",
    "sentiment",
    "negative",
    "critical",
    "rephrase",
    "asks",
    "repeat_across",
    "drift",
]


def _max_similarity_to_earlier(
    emb: np.ndarray, group: np.ndarray, lookback: int, times: np.ndarray | None = None, window: float | None = None
) -> np.ndarray:
    """For rows sorted by (group, time): max cosine similarity to the previous `lookback` rows of the same group."""
    best = np.full(len(emb), -1.0)
    for k in range(1, lookback + 1):
        if k >= len(emb):
            break
        same = group[k:] == group[:-k]
        if times is not None and window is not None:
            same &= (times[k:] - times[:-k]) <= window
        sim = np.einsum("ij,ij->i", emb[k:], emb[:-k])
        best[k:] = np.where(same, np.maximum(best[k:], sim), best[k:])
    return best


def message_signals(
    messages: pd.DataFrame, tickets: pd.DataFrame, scores: pd.DataFrame, embeddings: np.ndarray, params: SignalParams
) -> pd.DataFrame:
    """Signals per message; `scores` and `embeddings` are aligned with `messages` rows; `params` has its thresholds set (`within`)."""
    m = messages[["message_id", "ticket_id", "sent_at", "author", "body"]].reset_index(drop=True)
    m = m.assign(sentiment=scores["score"].to_numpy(), label=scores["label"].to_numpy(), _row=np.arange(len(m)))
    m = m.merge(tickets[["ticket_id", "account_id"]], on="ticket_id", how="left")
    m = m.sort_values(["ticket_id", "sent_at", "message_id"], kind="stable").reset_index(drop=True)
    emb = embeddings[m["_row"].to_numpy()].astype(np.float32)
    customer = (m["author"] == "customer").to_numpy()
    crit = detect_critical(m["body"].where(customer, ""))

    # rephrasings: customer messages only, compared with the ticket's earlier customer messages
    c = m[customer]
    cemb = emb[customer]
    ticket = c["ticket_id"].to_numpy(dtype=object)
    sim = _max_similarity_to_earlier(cemb, ticket, params.lookback)
    rephrase = sim >= params.rephrase_similarity
    asks = 1 + pd.Series(rephrase.astype(int)).groupby(ticket).cumsum().to_numpy()
    first_sent = c.groupby("ticket_id", sort=False)["sentiment"].transform("first").to_numpy()
    first_row = ~pd.Series(ticket).duplicated().to_numpy()
    drift = np.where(first_row, np.nan, c["sentiment"].to_numpy() - first_sent)

    # a ticket's opening repeats an earlier ticket's opening of the same account
    openings = c[first_row].assign(_emb=list(cemb[first_row]))
    openings = openings.sort_values(["account_id", "sent_at", "ticket_id"], kind="stable")
    oemb = np.stack(openings["_emb"].to_numpy()) if len(openings) else np.zeros((0, emb.shape[1]), dtype=np.float32)
    seconds = openings["sent_at"].astype("int64").to_numpy() / 1e6 if len(openings) else np.zeros(0)
    across = _max_similarity_to_earlier(
        oemb,
        openings["account_id"].to_numpy(dtype=object),
        params.lookback,
        seconds,
        params.repeat_window_days * 86400.0,
    )
    repeat_ids = set(openings["message_id"][across >= params.repeat_similarity])

    out = m[["message_id", "ticket_id", "account_id", "sent_at", "author", "sentiment"]].copy()
    out["negative"] = (m["label"] == "negative").to_numpy() & customer
    out["critical"] = crit["category"].where(customer).astype("str").to_numpy()
    out["rephrase"] = False
    out.loc[customer, "rephrase"] = rephrase
    out["asks"] = np.nan
    out.loc[customer, "asks"] = asks.astype(float)
    out["repeat_across"] = out["message_id"].isin(repeat_ids)
    out["drift"] = np.nan
    out.loc[customer, "drift"] = drift
    return out[COLUMNS]
