"""Intercom exports -> tickets, ticket_events, ticket_messages (ingest/intercom.py).

The fixtures (tests/ingest/fixtures/intercom/) follow the REST API's conversation model (parts,
statistics, rating; epoch seconds): a conversation exported twice (an early copy, then the full
one), a bot, a note, an implicit reopen by the customer, an explicit reopen, an outbound
conversation, a lead without a company, a rating without its own time, and a contact with two
companies.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from ingest.intercom import IntercomSource, read_intercom
from tests.ingest._helpers import FIXTURES, copy_fixtures, events_of, one_line_error_of, ticket_table_counts, utc

ACME, GLOBEX = "65a1f0c0e4b0a1b2c3d4e5f1", "65a1f0c0e4b0a1b2c3d4e5f2"


def read(base: Path = FIXTURES, **options) -> dict[str, pd.DataFrame]:
    return read_intercom(IntercomSource(folder="intercom", **options), base)


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    return read()


def test_the_tables_meet_the_contracts(tables):
    assert ticket_table_counts(tables) == {"tickets": 3, "ticket_events": 12, "ticket_messages": 11}


def test_conversations_become_tickets(tables):
    t = tables["tickets"].set_index("ticket_id")
    assert list(t.index) == ["1001", "1002", "1004"]  # 1003: a lead without a company
    assert t["account_id"].to_dict() == {"1001": ACME, "1002": GLOBEX, "1004": GLOBEX}  # Carol's first company
    assert t.loc["1001", "created_at"] == utc("2024-04-01 09:00")
    assert t["priority"].to_dict() == {"1001": "high", "1002": "normal", "1004": "normal"}
    assert t["channel"].to_dict() == {"1001": "chat", "1002": "email", "1004": "chat"}


def test_parts_become_events_when_they_happen(tables):
    assert events_of(tables, "1001") == [
        ("first_response", utc("2024-04-01 09:05"), None),  # statistics.first_admin_reply_at, not the bot's 09:02
        ("transferred", utc("2024-04-01 09:30"), None),  # the bot's first assignment is not a transfer
        ("resolved", utc("2024-04-01 10:00"), None),
        ("reopened", utc("2024-04-02 08:00"), None),  # the customer wrote into the closed conversation
        ("resolved", utc("2024-04-02 11:00"), None),
        ("csat", utc("2024-04-03 10:00"), 2.0),
    ]


def test_without_statistics_the_first_teammate_reply_is_the_first_response(tables):
    assert events_of(tables, "1002") == [
        ("first_response", utc("2024-04-05 16:00"), None),
        ("resolved", utc("2024-04-06 09:00"), None),
        ("reopened", utc("2024-04-08 10:00"), None),  # an explicit open; snoozing is neither
    ]


def test_a_rating_without_its_time_is_dated_at_the_last_update(tables):
    assert events_of(tables, "1004") == [
        ("first_response", utc("2024-04-11 09:00"), None),  # a close with a reply in it
        ("resolved", utc("2024-04-11 09:00"), None),
        ("csat", utc("2024-04-12 15:00"), 5.0),
    ]


def test_messages(tables):
    m = tables["ticket_messages"].set_index("message_id")
    assert m.loc["1001:source", "body"] == "Hi, our dashboard won't load."  # HTML and entities gone
    assert m.loc["1002:source", "body"] == "Hello,\nthe invoice INV-22 is charged twice."
    assert m.loc["1004:source", "author"] == "agent"  # an outbound conversation opens with a teammate
    assert "1001:7002" not in m.index  # the bot's auto-reply
    assert "1001:7004" not in m.index  # a note
    assert "1002:7105" not in m.index  # an empty part
    assert m.loc["1001:7005", "body"] == "Here it is: screenshot.png"
    assert m["author"].value_counts().to_dict() == {"customer": 5, "agent": 6}


def test_bot_messages_on_request():
    m = read(bot_messages=True)["ticket_messages"].set_index("message_id")
    assert m.loc["1001:7002", "author"] == "agent"


def test_account_keys():
    t = read(account_id="company.company_id")["tickets"]
    assert dict(zip(t["ticket_id"], t["account_id"], strict=True)) == {
        "1001": "ACC-001",
        "1002": "ACC-002",
        "1004": "ACC-002",
    }
    t = read(account_id="company.custom_attributes.crm_id")["tickets"]
    assert set(t["account_id"]) == {"A-1", "A-2"}
    t = read(account_id="contact.external_id")["tickets"]
    assert dict(zip(t["ticket_id"], t["account_id"], strict=True)) == {
        "1001": "u-alice",
        "1002": "u-bob",
        "1004": "u-carol",
    }


def test_category_from_tags_or_an_attribute():
    t = read(category={"map": {"bug": "bug", "billing": "billing"}})["tickets"].set_index("ticket_id")
    assert t["category"].to_dict() == {"1001": "bug", "1002": "billing", "1004": "technical"}
    t = read(category={"from": "attribute", "attribute": "Topic", "map": {"renewal": "account"}, "default": "how_to"})[
        "tickets"
    ]
    assert dict(zip(t["ticket_id"], t["category"], strict=True)) == {
        "1001": "how_to",
        "1002": "how_to",
        "1004": "account",
    }


# --- bad input -------------------------------------------------------------------------------


@pytest.fixture
def copy(tmp_path) -> Path:
    return copy_fixtures("intercom", tmp_path)


def _edit_conversation(base: Path, conversation_id: str, change) -> None:
    path = base / "intercom/conversations.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for conversation in lines:
        if conversation["id"] == conversation_id:
            change(conversation)
    path.write_text("".join(json.dumps(c) + "\n" for c in lines))


def one_line_error(base: Path, **options) -> str:
    return one_line_error_of(lambda: read(base, **options))


def test_a_bad_part_time_names_the_part(copy):
    _edit_conversation(
        copy, "1001", lambda c: c["conversation_parts"]["conversation_parts"][2].update(created_at="yesterday")
    )
    assert one_line_error(copy) == (
        "intercom/conversations.jsonl conversation part 7003: field 'created_at' value 'yesterday' is not a timestamp "
        "(expected ISO 8601 or epoch seconds)"
    )


def test_a_rating_out_of_range(copy):
    _edit_conversation(copy, "1004", lambda c: c["conversation_rating"].update(rating=7))
    assert one_line_error(copy).startswith(
        "intercom/conversations.jsonl conversation 1004: field 'conversation_rating.rating' value 7"
    )


def test_an_unmapped_priority(copy):
    _edit_conversation(copy, "1002", lambda c: c.update(priority="p1"))
    assert "conversation 1002: field 'priority' value 'p1' is not mapped" in one_line_error(copy)


def test_companies_need_the_contacts_export(copy):
    (copy / "intercom/contacts.json").unlink()
    assert "needs the contacts export" in one_line_error(copy)


def test_options_are_checked():
    with pytest.raises(ValidationError, match="unknown key 'bots'"):
        IntercomSource.model_validate({"bots": True})
    with pytest.raises(ValidationError, match="priority: 'p1' is not allowed"):
        IntercomSource.model_validate({"priority": {"priority": "p1"}})
    with pytest.raises(ValidationError, match="needs attribute"):
        IntercomSource.model_validate({"category": {"from": "attribute"}})
