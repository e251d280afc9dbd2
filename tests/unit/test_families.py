"""Every feature family on tiny hand-built frames, against values worked out by hand, and point in
time: rows dated at or after the cutoff change nothing. The text family reads the signals that a
stub sentiment model (tests/conftest.py) gives, so no encoder is loaded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.contracts import validate_tables
from features.context import FeatureContext, FeatureParams
from features.registry import families
from tests.conftest import tiny_tables

UTC = "datetime64[us, UTC]"
HOUR = 1 / 24


def tables(raw: dict[str, pd.DataFrame] | None = None, **rows: list[dict]) -> dict[str, pd.DataFrame]:
    """The tiny tables (as CSV text) with `rows` appended to each named table, validated."""
    raw = dict(raw or tiny_tables())
    for name, new in rows.items():
        raw[name] = pd.concat([raw[name], pd.DataFrame(new, dtype="str")], ignore_index=True)
    return validate_tables(raw)


def build(
    family: str, data: dict[str, pd.DataFrame], cutoff: str, accounts: tuple[str, ...] = ("A1", "A2")
) -> pd.DataFrame:
    """One family's features for `accounts` at one cutoff, indexed by account."""
    keys = pd.DataFrame(
        {
            "account_id": list(accounts),
            "cutoff": pd.Series(pd.Timestamp(cutoff, tz="UTC"), index=range(len(accounts))).astype(UTC),
        }
    )
    [found] = [f for f in families() if f.name == family]
    frame = found.build(FeatureContext(data, keys, FeatureParams()))
    assert list(frame.columns[: len(found.specs)]) == [s.name for s in found.specs] and len(frame) == len(keys)
    return frame.set_axis(list(accounts))


def check(frame: pd.DataFrame, expected: dict[str, dict[str, float]]) -> None:
    """`expected`: account -> feature -> value worked out by hand (NaN: null)."""
    for account, values in expected.items():
        got = frame.loc[account, list(values)].astype(float)
        np.testing.assert_allclose(
            got.to_numpy(),
            np.array(list(values.values()), dtype=float),
            rtol=1e-9,
            atol=1e-12,
            err_msg=f"{account}: {dict(zip(values, got, strict=True))}",
        )


# ---------------------------------------------------------------------------------- business


BUSINESS_EVENTS = [
    {"account_id": "A1", "at": "2024-01-15T00:00:00Z", "kind": "downgrade", "value": "-1000"},
    {"account_id": "A2", "at": "2024-01-10T00:00:00Z", "kind": "upgrade", "value": "10000"},
    {"account_id": "A2", "at": "2024-01-20T00:00:00Z", "kind": "sponsor_left", "value": ""},
]


def test_business_on_a_tiny_frame():
    data = tables(account_events=BUSINESS_EVENTS)
    frame = build("business", data, "2024-02-01")
    a1, a2 = 9000 - 1000, 250000.5 + 10000
    average = (a1 + a2) / 2  # both accounts are live on 2024-02-01 (A1 churns on 2024-03-01)
    check(
        frame,
        {
            "A1": {
                "arr_current": a1,
                "arr_vs_average": a1 / average,
                "arr_change_365d": -1000,
                "seats": 10,
                "tenure_days": 31,
                "days_to_renewal": 0,
                "exec_sponsor_present": 0,
            },  # monthly from 2024-01-01: renews on the cutoff itself
            "A2": {
                "arr_current": a2,
                "arr_vs_average": a2 / average,
                "arr_change_365d": 10000,
                "seats": 400,
                "tenure_days": 214 + 17,  # 2023-06-15 -> 2024-01-15 -> 2024-02-01
                "days_to_renewal": 29 + 31 + 30 + 31 + 14,  # annual: 2024-06-15 (2024 is a leap year)
                "exec_sponsor_present": 0,
            },  # a sponsor at contract who left on 2024-01-20
        },
    )
    assert frame.loc["A2", ["segment", "billing", "plan"]].tolist() == ["enterprise", "annual", "enterprise"]
    # once A1 has churned, the average is A2's alone
    assert build("business", data, "2024-03-02", ("A2",)).loc["A2", "arr_vs_average"] == pytest.approx(1.0)


def test_business_point_in_time():
    data = tables(account_events=BUSINESS_EVENTS)
    later = tables(
        account_events=BUSINESS_EVENTS
        + [
            # at the cutoff: not yet known
            {"account_id": "A1", "at": "2024-02-01T00:00:00Z", "kind": "upgrade", "value": "5000"},
            {"account_id": "A2", "at": "2024-02-10T00:00:00Z", "kind": "downgrade", "value": "-2000"},
        ]
    )
    pd.testing.assert_frame_equal(build("business", later, "2024-02-01"), build("business", data, "2024-02-01"))


# ---------------------------------------------------------------------------------- risk events


RISK_EVENTS = [
    {"account_id": "A1", "at": "2024-01-10T12:00:00Z", "kind": "payment_failed", "value": ""},
    {"account_id": "A1", "at": "2024-01-20T00:00:00Z", "kind": "payment_failed", "value": ""},
    {"account_id": "A2", "at": "2023-07-01T00:00:00Z", "kind": "legal_threat", "value": ""},
]


def test_risk_events_on_a_tiny_frame():
    frame = build("risk_events", tables(account_events=RISK_EVENTS), "2024-02-01")
    check(
        frame,
        {
            "A1": {
                "payment_failed_180d": 2,
                "days_since_payment_failed": 12,
                "billing_dispute_180d": 0,
                "days_since_billing_dispute": np.nan,
            },
            # tiny's billing dispute on 2024-01-06 10:00; the legal threat 215 days back is outside the 180 days but still dated
            "A2": {
                "billing_dispute_180d": 1,
                "days_since_billing_dispute": 25 + 14 * HOUR,
                "legal_threat_180d": 0,
                "days_since_legal_threat": 215,
                "payment_failed_180d": 0,
                "sponsor_left_180d": 0,
                "days_since_sponsor_left": np.nan,
            },
        },
    )


def test_risk_events_point_in_time():
    later = tables(
        account_events=RISK_EVENTS
        + [
            {"account_id": "A1", "at": "2024-02-01T00:00:00Z", "kind": "payment_failed", "value": ""},
            {"account_id": "A2", "at": "2024-02-05T00:00:00Z", "kind": "legal_threat", "value": ""},
        ]
    )
    pd.testing.assert_frame_equal(
        build("risk_events", later, "2024-02-01"),
        build("risk_events", tables(account_events=RISK_EVENTS), "2024-02-01"),
    )


# ---------------------------------------------------------------------------------- surveys


# tiny has a 4 on 2024-02-01
NPS = [{"account_id": "A2", "answered_at": "2023-08-01T00:00:00Z", "kind": "nps", "score": "9", "comment": ""}]
CSAT = [
    {"ticket_id": "T1", "at": "2024-01-20T00:00:00Z", "kind": "csat", "value": "2"},  # tiny has a 5 on T1
    {"ticket_id": "T2", "at": "2024-01-08T00:00:00Z", "kind": "csat", "value": "3"},
]


def test_surveys_on_a_tiny_frame():
    frame = build("surveys", tables(surveys=NPS, ticket_events=CSAT), "2024-03-01")
    check(
        frame,
        {
            "A1": {
                "nps_last": np.nan,
                "nps_detractor": np.nan,
                "nps_change": np.nan,
                "days_since_nps": np.nan,
                "nps_answers_365d": 0,
                "csat_mean_180d": (5 + 2) / 2,
                "csat_answers_180d": 2,
                "csat_last": 2,
            },
            "A2": {
                "nps_last": 4,
                "nps_detractor": 1,
                "nps_change": 4 - 9,
                "days_since_nps": 28 + 14 * HOUR,
                "nps_answers_365d": 2,
                "csat_mean_180d": 3,
                "csat_answers_180d": 1,
                "csat_last": 3,
            },
        },
    )
    # before the 4 was given, the 9 is the latest: a promoter
    check(
        build("surveys", tables(surveys=NPS, ticket_events=CSAT), "2024-02-01"),
        {"A2": {"nps_last": 9, "nps_detractor": 0, "nps_change": np.nan}},
    )


def test_surveys_point_in_time():
    base = tables(surveys=NPS, ticket_events=CSAT)
    later = tables(
        surveys=NPS
        + [
            {"account_id": "A2", "answered_at": "2024-03-01T00:00:00Z", "kind": "nps", "score": "0", "comment": "awful"}
        ],
        ticket_events=CSAT + [{"ticket_id": "T1", "at": "2024-03-02T00:00:00Z", "kind": "csat", "value": "1"}],
    )
    pd.testing.assert_frame_equal(build("surveys", later, "2024-03-01"), build("surveys", base, "2024-03-01"))


# ---------------------------------------------------------------------------------- support, effort, communication


TICKETS = [
    {
        "ticket_id": "T3",
        "account_id": "A1",
        "created_at": "2024-01-20T09:00:00Z",
        "priority": "high",
        "category": "how_to",
        "channel": "chat",
    }
]
EVENTS = [
    {"ticket_id": "T1", "at": "2024-01-10T00:00:00Z", "kind": "reopened", "value": ""},
    {"ticket_id": "T1", "at": "2024-01-11T00:00:00Z", "kind": "resolved", "value": ""},
    {"ticket_id": "T1", "at": "2024-01-12T00:00:00Z", "kind": "ces", "value": "6"},
    {"ticket_id": "T2", "at": "2024-01-07T00:00:00Z", "kind": "transferred", "value": ""},
]
MESSAGES = [
    {
        "message_id": "M3",
        "ticket_id": "T3",
        "sent_at": "2024-01-20T10:00:00Z",
        "author": "agent",
        "body": "Which user?",
    },  # never answered
    {
        "message_id": "M4",
        "ticket_id": "T2",
        "sent_at": "2024-01-07T00:00:00Z",
        "author": "agent",
        "body": "Refund on its way.",
    },
    # within 48 h
    {"message_id": "M5", "ticket_id": "T2", "sent_at": "2024-01-08T00:00:00Z", "author": "customer", "body": "Thanks."},
    # resolved an hour later
    {"message_id": "M6", "ticket_id": "T1", "sent_at": "2024-01-06T11:00:00Z", "author": "agent", "body": "Done."},
]


def support_tables(**later: list[dict]) -> dict[str, pd.DataFrame]:
    return tables(
        tickets=TICKETS + later.get("tickets", []),
        ticket_events=EVENTS + later.get("ticket_events", []),
        ticket_messages=MESSAGES + later.get("ticket_messages", []),
    )


def test_support_on_a_tiny_frame():
    frame = build("support", support_tables(), "2024-02-01")
    check(
        frame,
        {
            # T1 (how_to, email): resolved, reopened, resolved again; T3 (how_to, chat, high) 15 days later is open
            "A1": {
                "tickets_30d": 2,
                "tickets_90d": 2,
                "open_tickets": 1,
                "open_ticket_age_days": 11 + 15 * HOUR,
                "high_priority_tickets_30d": 1,
                "repeat_tickets_90d": 1,
                "same_issue_contacts_max_30d": 2,
                "tickets_how_to_90d": 2,
                "tickets_billing_90d": 0,
            },
            # T2 (billing, urgent), created 2024-01-06 08:30 UTC, never resolved
            "A2": {
                "tickets_30d": 1,
                "open_tickets": 1,
                "open_ticket_age_days": 25 + 15.5 * HOUR,
                "high_priority_tickets_30d": 1,
                "repeat_tickets_90d": 0,
                "same_issue_contacts_max_30d": 1,
                "tickets_billing_90d": 1,
                "tickets_how_to_90d": 0,
            },
        },
    )


def test_effort_on_a_tiny_frame():
    frame = build("effort", support_tables(), "2024-02-01")
    check(
        frame,
        {
            # T1 answered in 2 h; T3 never answered (a breach 24 h after creation); T1 resolved 26 h and 134 h after creation
            "A1": {
                "awaiting_first_response": 1,
                "first_response_hours_90d": 2,
                "response_breaches_90d": 1,
                "resolution_hours_90d": (26 + 134) / 2,
                "reopens_90d": 1,
                "transfers_90d": 0,
                "channel_switches_90d": 1,
                "ces_mean_180d": 6,
                "ces_answers_180d": 1,
            },
            "A2": {
                "awaiting_first_response": 0,
                "first_response_hours_90d": 3.5,
                "response_breaches_90d": 0,
                "resolution_hours_90d": np.nan,
                "reopens_90d": 0,
                "transfers_90d": 1,
                "channel_switches_90d": 0,
                "ces_mean_180d": np.nan,
                "ces_answers_180d": 0,
            },
        },
    )


def test_communication_on_a_tiny_frame():
    frame = build("communication", support_tables(), "2024-02-01")
    check(
        frame,
        {
            "A1": {
                "unanswered_agent_messages": 1,
                "customer_messages_30d": 1,
                "days_since_customer_message": 26 + 14 * HOUR,
            },
            "A2": {"unanswered_agent_messages": 0, "customer_messages_30d": 2, "days_since_customer_message": 24},
        },
    )


def test_support_effort_and_communication_point_in_time():
    later = support_tables(
        tickets=[
            {
                "ticket_id": "T4",
                "account_id": "A1",
                "created_at": "2024-02-01T00:00:00Z",
                "priority": "urgent",
                "category": "how_to",
                "channel": "phone",
            }
        ],
        ticket_events=[
            {"ticket_id": "T3", "at": "2024-02-02T00:00:00Z", "kind": "first_response", "value": ""},
            {"ticket_id": "T3", "at": "2024-02-03T00:00:00Z", "kind": "resolved", "value": ""},
            {"ticket_id": "T2", "at": "2024-02-01T00:00:00Z", "kind": "resolved", "value": ""},
        ],
        ticket_messages=[
            {
                "message_id": "M7",
                "ticket_id": "T3",
                "sent_at": "2024-02-01T05:00:00Z",
                "author": "customer",
                "body": "Bob.",
            },
            {
                "message_id": "M8",
                "ticket_id": "T4",
                "sent_at": "2024-02-01T00:00:00Z",
                "author": "customer",
                "body": "Help!",
            },
        ],
    )
    for family in ("support", "effort", "communication"):
        pd.testing.assert_frame_equal(
            build(family, later, "2024-02-01"), build(family, support_tables(), "2024-02-01"), obj=family
        )


# ---------------------------------------------------------------------------------- usage


CUTOFF = pd.Timestamp("2024-01-01", tz="UTC")


def usage_rows(days_before: range, **values: float) -> list[dict]:
    """A2's usage on the days `days_before` the cutoff (1: the day before it), the same values each day."""
    return [
        {
            "account_id": "A2",
            "date": str((CUTOFF - pd.Timedelta(days=d)).date()),
            **{k: str(v) for k, v in values.items()},
        }
        for d in days_before
    ]


#: 90 days at one level, then 27 days at a lower one, then 3 days without any activity; one account
#: in the base, so no other account moves its days' weights (they are all 1) and changes are plain
BEFORE = {
    "active_users": 10,
    "logins": 20,
    "session_minutes": 100,
    "key_feature_events": 40,
    "distinct_features_used": 4,
    "api_calls": 0,
    "exports": 4,
}
RECENT = {
    "active_users": 5,
    "logins": 10,
    "session_minutes": 50,
    "key_feature_events": 10,
    "distinct_features_used": 2,
    "api_calls": 0,
    "exports": 2,
}
IDLE = {
    "active_users": 0,
    "logins": 0,
    "session_minutes": 0,
    "key_feature_events": 0,
    "distinct_features_used": 0,
    "api_calls": 0,
    "exports": 0,
}
USAGE = usage_rows(range(31, 121), **BEFORE) + usage_rows(range(4, 31), **RECENT) + usage_rows(range(1, 4), **IDLE)


def usage_tables(rows: list[dict]) -> dict[str, pd.DataFrame]:
    raw = tiny_tables()
    raw["usage_daily"] = pd.DataFrame(rows, dtype="str")  # A2's rows only (A1 starts after the cutoff)
    return tables(raw)


def test_usage_on_a_tiny_frame():
    frame = build("usage", usage_tables(USAGE), str(CUTOFF.date()), ("A2",))
    # active users over the last 90 days, oldest first: days 90..31 at 10, 30..4 at 5, 3..1 at 0
    users = np.array([10.0] * 60 + [5.0] * 27 + [0.0] * 3)
    trend = np.polyfit(np.arange(90), users, 1)[0] * 7 / users.mean()
    week, before_week = (4 * 5) / 7, (23 * 5 + 67 * 10) / 90  # the last 7 days; the 90 before them (days 97..8)
    check(
        frame,
        {
            "A2": {
                "active_users_7d": week,
                "active_users_change_7d": week / before_week - 1,
                "logins_30d": 27 * 10,
                "logins_change_30d": (27 * 10 / 30) / 20 - 1,
                "login_days_30d": 27,
                "session_minutes_per_user_30d": 50 / 5,
                "key_feature_events_per_user_30d": 10 / 5,
                "key_feature_events_change_30d": (27 * 10 / 30) / 40 - 1,
                "api_calls_change_30d": np.nan,  # no API calls before: no integration
                "days_since_last_login": 4,
                "login_interval_days_90d": 90 / 87,
                "login_interval_vs_healthy": 90 / 87 / 3.5,
                "zero_usage_streak_days": 3,
                "zero_usage_days_30d": 3,
                "distinct_features_30d": 2,
                "distinct_features_change_30d": 2 / 4 - 1,  # per active user-day
                "seat_utilisation_30d": (27 * 5 / 30) / 400,
                "active_users_trend_90d": trend,
                # an extra column of the usage table becomes a measure of its own
                "usage_exports_30d": 27 * 2 / 30,
                "usage_exports_change_30d": (27 * 2 / 30) / 4 - 1,
            }
        },
    )


def test_usage_point_in_time():
    # a row dated the cutoff covers that whole day, which has not ended at the cutoff
    later = USAGE + usage_rows(range(0, -5, -1), **{k: v * 10 for k, v in BEFORE.items()})
    pd.testing.assert_frame_equal(
        build("usage", usage_tables(later), str(CUTOFF.date()), ("A2",)),
        build("usage", usage_tables(USAGE), str(CUTOFF.date()), ("A2",)),
    )


# ---------------------------------------------------------------------------------- experience


def outcomes(rows: list[tuple[str, str, float, float]]) -> pd.DataFrame:
    """Predicted CSAT and CES of resolved tickets (what models.outcomes hands the family)."""
    return pd.DataFrame(
        {
            "account_id": [r[0] for r in rows],
            "at": pd.to_datetime([r[1] for r in rows], utc=True).astype(UTC),
            "predicted_csat": [r[2] for r in rows],
            "predicted_ces": [r[3] for r in rows],
        }
    )


OUTCOMES = [
    ("A1", "2024-01-06T12:00:00Z", 2.0, 6.0),
    ("A1", "2024-01-11T00:00:00Z", 4.0, 3.0),
    ("A2", "2023-10-01T00:00:00Z", 1.0, 7.0),  # 123 days before the cutoff: outside the 90 days
    ("A2", "2024-01-07T00:00:00Z", 2.5, np.nan),
]


def test_experience_on_a_tiny_frame():
    frame = build("experience", tables() | {"ticket_outcomes": outcomes(OUTCOMES)}, "2024-02-01")
    check(
        frame,
        {
            "A1": {
                "predicted_csat_90d": 3.0,
                "predicted_ces_90d": 4.5,
                "predicted_unhappy_tickets_90d": 1,
                "predicted_high_effort_tickets_90d": 1,
            },
            "A2": {
                "predicted_csat_90d": 2.5,
                "predicted_ces_90d": np.nan,
                "predicted_unhappy_tickets_90d": 1,
                "predicted_high_effort_tickets_90d": 0,
            },
        },
    )
    # without predictions (text signals not computed) every experience feature is null
    assert build("experience", tables(), "2024-02-01").isna().all().all()


def test_experience_point_in_time():
    later = OUTCOMES + [("A1", "2024-02-01T00:00:00Z", 1.0, 7.0), ("A2", "2024-03-01T00:00:00Z", 1.0, 7.0)]
    pd.testing.assert_frame_equal(
        build("experience", tables() | {"ticket_outcomes": outcomes(later)}, "2024-02-01"),
        build("experience", tables() | {"ticket_outcomes": outcomes(OUTCOMES)}, "2024-02-01"),
    )


# ---------------------------------------------------------------------------------- text


TEXT_TICKETS = [
    {
        "ticket_id": "T5",
        "account_id": "A2",
        "created_at": "2024-02-01T09:00:00Z",
        "priority": "normal",
        "category": "billing",
        "channel": "email",
    }
]
# A2's customer messages; tiny's M2 "We were charged twice." opens T2 on 2024-01-06 (negative: -0.7)
TEXT_MESSAGES = [
    {
        "message_id": "M7",
        "ticket_id": "T2",
        "sent_at": "2024-01-20T09:00:00Z",
        "author": "customer",
        "body": "We were charged twice.",
    },
    {
        "message_id": "M9",
        "ticket_id": "T5",
        "sent_at": "2024-02-01T09:00:00Z",
        "author": "customer",
        "body": "We were charged twice.",
    },
    {
        "message_id": "M8",
        "ticket_id": "T2",
        "sent_at": "2024-02-10T09:00:00Z",
        "author": "customer",
        "body": "We were charged twice.",
    },
    {
        "message_id": "M10",
        "ticket_id": "T5",
        "sent_at": "2024-02-20T09:00:00Z",
        "author": "customer",
        "body": "Thanks, great help.",
    },
    {
        "message_id": "M12",
        "ticket_id": "T5",
        "sent_at": "2024-02-21T09:00:00Z",
        "author": "agent",
        "body": "Sorry, we are so angry too.",
    },
    {
        "message_id": "M11",
        "ticket_id": "T5",
        "sent_at": "2024-02-25T09:00:00Z",
        "author": "customer",
        "body": "We want to cancel our contract.",
    },
]


def with_signals(data: dict[str, pd.DataFrame], model) -> dict[str, pd.DataFrame]:
    """The tables plus `message_signals` from `model`, customer messages scored (as the pipeline does)."""
    from features.text.sentiment import score_texts
    from features.text.signals import SignalParams, message_signals

    messages = data["ticket_messages"].reset_index(drop=True)
    customer = (messages["author"] == "customer").to_numpy()
    scored, embedded = score_texts(messages.loc[customer, "body"].tolist(), model)
    scores = pd.DataFrame({"label": pd.Series("neutral", index=messages.index, dtype="str"), "score": np.nan})
    scores.loc[customer, "label"] = scored["label"].to_numpy()
    scores.loc[customer, "score"] = scored["score"].to_numpy()
    embeddings = np.zeros((len(messages), embedded.shape[1]), dtype=np.float32)
    embeddings[customer] = embedded
    return data | {
        "message_signals": message_signals(
            messages, data["tickets"], scores, embeddings, SignalParams().within(model.embedder)
        )
    }


def test_text_on_a_tiny_frame(stub_text_model):
    frame = build(
        "text", with_signals(tables(tickets=TEXT_TICKETS, ticket_messages=TEXT_MESSAGES), stub_text_model), "2024-03-01"
    )
    # in the last 30 days: M9 -0.7, M8 -0.7, M10 +0.7, M11 -0.7; the 90 before them: M2 and M7, both -0.7
    recent = (-0.7 - 0.7 + 0.7 - 0.7) / 4
    check(
        frame,
        {
            "A2": {
                "customer_sentiment_30d": recent,
                "customer_sentiment_90d": (5 * -0.7 + 0.7) / 6,
                "sentiment_change_30d": recent + 0.7,
                "negative_messages_30d": 3,
                "critical_moments_90d": 1,
                "days_since_critical_moment": 4 + 15 * HOUR,
                "cancel_mentions_90d": 1,
                "supervisor_requests_90d": 0,
                "legal_mentions_90d": 0,
                "rephrasings_30d": 1,  # M8, T2's question a third time (M7, its second, is older than 30 days)
                "questions_asked_three_times_90d": 1,
                "repeated_tickets_text_90d": 1,  # T5 opens as T2 did, 26 days later
                # each follow-up against its ticket's first customer message: M7 0, M8 0, M10 +1.4, M11 0
                "frustration_drift_90d": 1.4 / 4,
            },
            # A1's one message (neutral, 2024-01-05) is 56 days old
            "A1": {
                "customer_sentiment_30d": np.nan,
                "customer_sentiment_90d": 0.0,
                "sentiment_change_30d": np.nan,
                "negative_messages_30d": 0,
                "critical_moments_90d": 0,
                "days_since_critical_moment": np.nan,
                "frustration_drift_90d": np.nan,
            },
        },
    )
    # without signals (text not computed) every text feature is null
    assert build("text", tables(), "2024-03-01").isna().all().all()


def test_text_point_in_time(stub_text_model):
    later = TEXT_MESSAGES + [
        {
            "message_id": "M13",
            "ticket_id": "T5",
            "sent_at": "2024-03-01T00:00:00Z",
            "author": "customer",
            "body": "Talk to your manager, we want to cancel.",
        },
        {
            "message_id": "M14",
            "ticket_id": "T2",
            "sent_at": "2024-03-05T00:00:00Z",
            "author": "customer",
            "body": "We were charged twice.",
        },
    ]
    before = with_signals(tables(tickets=TEXT_TICKETS, ticket_messages=TEXT_MESSAGES), stub_text_model)
    after = with_signals(tables(tickets=TEXT_TICKETS, ticket_messages=later), stub_text_model)
    pd.testing.assert_frame_equal(build("text", after, "2024-03-01"), build("text", before, "2024-03-01"))


def test_every_family_is_tested_here():
    tested = {"business", "risk_events", "surveys", "support", "effort", "communication", "usage", "experience", "text"}
    assert {f.name for f in families()} == tested
