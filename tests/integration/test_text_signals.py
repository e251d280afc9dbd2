"""Per-message text signals: a question asked three times is counted, different questions are not,
frustration drift and critical moments reach the account features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.contracts import CONTRACTS
from features.panel import build_features
from pipelines.features import add_message_signals
from text.encoder import TextEncoder
from text.sentiment import SHIPPED_HEAD, SentimentHead, SentimentModel

T0 = pd.Timestamp("2024-03-01 09:00", tz="UTC")


@pytest.fixture(scope="module")
def model():
    return SentimentModel(TextEncoder(), SentimentHead.load(SHIPPED_HEAD))


def _conversation(ticket: str, account: str, turns: list[tuple[str, str]], start: pd.Timestamp) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "message_id": [f"{ticket}-{i}" for i in range(len(turns))],
            "ticket_id": ticket,
            "sent_at": [start + pd.Timedelta(hours=3 * i) for i in range(len(turns))],
            "author": [a for a, _ in turns],
            "body": [b for _, b in turns],
        }
    )


def _tables(messages: pd.DataFrame, tickets: pd.DataFrame) -> dict[str, pd.DataFrame]:
    accounts = pd.DataFrame(
        {
            "account_id": ["A1", "A2"],
            "seats": [10, 10],
            "arr": [1000.0, 1000.0],
            "contract_start": pd.to_datetime(["2023-01-01", "2023-01-01"], utc=True).astype("datetime64[us, UTC]"),
            "exec_sponsor": [False, False],
            "billing": ["annual", "annual"],
            "segment": "smb",
            "plan": "growth",
            "industry": "software",
            "region": "emea",
            "name": "x",
            "csm_owner": None,
        }
    )
    return {
        "accounts": accounts,
        "tickets": tickets,
        "ticket_messages": messages,
        "ticket_events": CONTRACTS["ticket_events"].empty(),
    }


def test_a_question_asked_three_times_is_counted(model):
    asked_thrice = _conversation(
        "T1",
        "A1",
        [
            ("customer", "How do I export a dashboard to PDF?"),
            ("agent", "Thanks, looking into it."),
            ("customer", "As I said before, how can I export my dashboard as a PDF file?"),
            ("agent", "Could you share a screenshot?"),
            ("customer", "Again: how do I export the dashboard to PDF?"),
        ],
        T0,
    )
    different = _conversation(
        "T2",
        "A2",
        [
            ("customer", "How do I export a dashboard to PDF?"),
            ("agent", "Here is the guide."),
            ("customer", "Thanks! Also, can we change the billing contact to our finance team?"),
            ("agent", "Done."),
            ("customer", "Great, and where do I rotate the API key?"),
        ],
        T0,
    )
    messages = pd.concat([asked_thrice, different], ignore_index=True)
    tickets = pd.DataFrame(
        {
            "ticket_id": ["T1", "T2"],
            "account_id": ["A1", "A2"],
            "created_at": [T0, T0],
            "category": "how_to",
            "priority": "normal",
            "channel": "email",
        }
    )
    tables = add_message_signals(_tables(messages, tickets), model, None)
    sig = tables["message_signals"].set_index("message_id")
    assert sig.loc[["T1-2", "T1-4"], "rephrase"].all()
    assert sig.loc["T1-4", "asks"] == 3
    assert not sig.loc[["T2-2", "T2-4"], "rephrase"].any()
    assert sig.loc["T2-4", "asks"] == 1
    keys = pd.DataFrame({"account_id": ["A1", "A2"], "cutoff": pd.Timestamp("2024-03-05", tz="UTC")})
    keys["cutoff"] = keys["cutoff"].astype("datetime64[us, UTC]")
    from features.registry import families

    text = [f for f in families() if f.name == "text"]
    got = build_features(tables, keys, only=text).set_index("account_id")
    assert (
        got.loc["A1", "questions_asked_three_times_90d"] == 1 and got.loc["A2", "questions_asked_three_times_90d"] == 0
    )
    assert got.loc["A1", "rephrasings_30d"] == 2 and got.loc["A2", "rephrasings_30d"] == 0
    # before the third ask was sent, it had not happened
    early = keys.assign(cutoff=(T0 + pd.Timedelta(hours=7)).floor("h"))
    early["cutoff"] = pd.Timestamp("2024-03-01", tz="UTC")
    assert build_features(tables, early, only=text).set_index("account_id").loc["A1", "rephrasings_30d"] == 0


def test_frustration_drift_and_critical_moments(model):
    souring = _conversation(
        "T1",
        "A1",
        [
            ("customer", "Hi, the sync stopped overnight, could you take a look? Thanks!"),
            ("agent", "Looking into it."),
            ("customer", "Still broken. This is getting really frustrating."),
            ("agent", "Sorry, still investigating."),
            (
                "customer",
                "This is unacceptable. I want to speak to a manager. We are considering cancelling our subscription.",
            ),
        ],
        T0,
    )
    tickets = pd.DataFrame(
        {
            "ticket_id": ["T1"],
            "account_id": ["A1"],
            "created_at": [T0],
            "category": "technical",
            "priority": "high",
            "channel": "chat",
        }
    )
    tables = add_message_signals(_tables(souring, tickets), model, None)
    sig = tables["message_signals"].set_index("message_id")
    assert sig.loc["T1-2", "drift"] < -0.3 and sig.loc["T1-4", "drift"] < -0.3  # both far below the friendly opening
    assert sig.loc["T1-4", "critical"] == "cancel"  # cancelling outranks asking for a manager
    assert np.isnan(sig.loc["T1-0", "drift"]) and not isinstance(sig.loc["T1-0", "critical"], str)
