"""Zendesk exports -> tickets, ticket_events, ticket_messages (ingest/zendesk.py).

The fixtures (tests/ingest/fixtures/zendesk/) follow the incremental export API's shapes with the
awkward parts of real exports: two overlapping ticket pages, a merged, a deleted and an
organisation-less ticket, offsets other than UTC, a permanently deleted comment author, comments
both per-ticket and as JSON Lines, sideloaded comment events, and a rating exported twice.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from core.errors import InputError
from ingest.zendesk import ZendeskExport, ZendeskSource, map_zendesk, read_zendesk
from tests.ingest._helpers import (
    FIXTURES,
    assert_leaves_inputs_alone,
    copy_fixtures,
    events_of,
    fixture_export,
    one_line_error_of,
    ticket_table_counts,
    utc,
)


def read(base: Path = FIXTURES, **options) -> dict[str, pd.DataFrame]:
    return read_zendesk(ZendeskSource(folder="zendesk", **options), base)


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    return read()


def test_the_tables_meet_the_contracts(tables):
    assert ticket_table_counts(tables) == {"tickets": 5, "ticket_events": 12, "ticket_messages": 12}


def test_merged_deleted_and_unmapped_tickets_are_left_out(tables, caplog):
    assert sorted(tables["tickets"]["ticket_id"]) == ["1042", "1043", "1044", "1048", "1049"]
    assert not {"1045", "1046", "1047"} & (
        set(tables["ticket_events"]["ticket_id"]) | set(tables["ticket_messages"]["ticket_id"])
    )
    with caplog.at_level("WARNING"):
        read()
    assert (
        "merged into another ticket): 1045" in caplog.text and "deleted): 1047" in caplog.text and "1046" in caplog.text
    )


def test_ticket_fields(tables):
    t = tables["tickets"].set_index("ticket_id")
    # offsets converted to UTC; the later export page wins (1042's priority changed to high)
    assert t.loc["1042", "created_at"] == utc("2024-03-04 08:15")
    assert t.loc["1048", "created_at"] == utc("2024-03-15 23:45")
    assert t.loc["1049", "created_at"] == utc("2024-03-20 05:00")
    assert t["priority"].to_dict() == {
        "1042": "high",
        "1043": "normal",
        "1044": "low",
        "1048": "urgent",
        "1049": "normal",
    }
    assert t["channel"].to_dict() == {"1042": "email", "1043": "web", "1044": "chat", "1048": "phone", "1049": "web"}
    assert t["category"].to_dict() == {
        "1042": "bug",
        "1043": "technical",
        "1044": "how_to",
        "1048": "technical",
        "1049": "technical",
    }
    assert t["account_id"].to_dict() == {"1042": "501", "1043": "502", "1044": "501", "1048": "502", "1049": "503"}


def test_a_reopened_ticket_has_each_event_when_it_happened(tables):
    assert events_of(tables, "1042") == [
        ("first_response", utc("2024-03-04 10:02"), None),
        ("resolved", utc("2024-03-05 14:00"), None),
        ("reopened", utc("2024-03-07 13:30"), None),  # 08:30-05:00
        ("transferred", utc("2024-03-07 14:00"), None),
        ("resolved", utc("2024-03-08 10:00"), None),
        ("csat", utc("2024-03-09 11:00"), 5.0),  # dated when scored (updated_at), not when offered
    ]


def test_closing_a_solved_ticket_is_not_a_second_resolution(tables):
    assert events_of(tables, "1044") == [
        ("first_response", utc("2024-03-12 08:20"), None),
        ("resolved", utc("2024-03-12 08:20"), None),
        ("csat", utc("2024-03-12 16:00"), 1.0),  # "bad", 18:00+02:00
    ]


def test_one_update_moving_group_and_assignee_is_one_transfer_and_a_first_assignment_none(tables):
    assert events_of(tables, "1048") == [
        ("first_response", utc("2024-03-16 01:00"), None),
        ("transferred", utc("2024-03-16 08:00"), None),
    ]


def test_offered_and_unoffered_ratings_are_no_answer(tables):
    csat = tables["ticket_events"][tables["ticket_events"]["kind"] == "csat"]
    assert sorted(csat["ticket_id"]) == ["1042", "1044"]


def test_messages(tables):
    m = tables["ticket_messages"].set_index("message_id")
    assert "10423" not in m.index  # an internal note
    assert "10451" not in m.index  # a merged ticket's comment
    assert m.loc["10426", "author"] == "customer"  # author missing from users: a deleted user
    assert m.loc["20441", "author"] == "customer"  # a soft-deleted user still listed as an end user
    assert m.loc["20442", "body"] == "Hi! Go to Reports > Export."  # sideloaded with the comment events
    assert m.loc["10425", "sent_at"] == utc("2024-03-07 13:30")
    assert m.index.is_unique  # 10432 is in two files
    assert m["author"].value_counts().to_dict() == {"customer": 6, "agent": 6}


def test_deleted_authors_can_be_dropped_and_agents_named():
    m = read(deleted_authors="drop")["ticket_messages"]
    assert "10426" not in set(m["message_id"]) and len(m) == 11
    m = read(agents={"ids": [9999]})["ticket_messages"].set_index("message_id")
    assert m.loc["10426", "author"] == "agent"


def test_private_comments_on_request():
    m = read(private_comments=True)["ticket_messages"]
    assert "10423" in set(m["message_id"])


def test_without_a_users_export_the_requester_is_the_customer():
    export = _export()
    out = map_zendesk(ZendeskExport(**{**export.__dict__, "users": pd.DataFrame()}), ZendeskSource())
    authors = out["ticket_messages"].set_index("message_id")["author"]
    assert authors["10421"] == "customer" and authors["20441"] == "customer"
    assert authors["10426"] == "agent" and authors["10422"] == "agent"


def test_the_mapper_leaves_its_inputs_alone():
    assert_leaves_inputs_alone(_export(), lambda export: map_zendesk(export, ZendeskSource()))


def test_category_from_tags_or_a_custom_field():
    by_tags = read(
        category={
            "from": "tags",
            "map": {
                "billing_question": "billing",
                "sso": "security",
                "login": "account",
                "feature_request": "feature_request",
            },
        }
    )["tickets"].set_index("ticket_id")
    assert by_tags["category"].to_dict() == {
        "1042": "security",
        "1043": "billing",
        "1044": "technical",
        "1048": "technical",
        "1049": "feature_request",
    }
    by_field = read(
        category={
            "from": "field",
            "field_id": 360001,
            "map": {"billing_question": "billing", "reporting": "how_to"},
            "default": "technical",
        }
    )["tickets"].set_index("ticket_id")
    assert by_field.loc["1043", "category"] == "billing" and by_field.loc["1044", "category"] == "how_to"


def test_priority_from_a_custom_field():
    t = read(priority={"field_id": 360002, "map": {"sev1": "urgent", "sev2": "high", "sev4": "low"}})[
        "tickets"
    ].set_index("ticket_id")
    assert t["priority"].to_dict() == {
        "1042": "high",
        "1043": "normal",
        "1044": "low",
        "1048": "urgent",
        "1049": "normal",
    }


def test_account_from_an_organisation_field():
    t = read(account_id="organization.external_id")["tickets"]
    assert dict(zip(t["ticket_id"], t["account_id"], strict=True)) == {
        "1042": "ACC-001",
        "1043": "ACC-002",
        "1044": "ACC-001",
        "1048": "ACC-002",
    }
    t = read(account_id="organization.organization_fields.account_number")["tickets"]
    assert set(t["account_id"]) == {"A-1", "A-2", "A-3"}
    with pytest.raises(InputError, match="zendesk.account_id: 'organization.organization_fields.crm'.*no organization"):
        read(account_id="organization.organization_fields.crm")


# --- bad input -------------------------------------------------------------------------------


def _export() -> ZendeskExport:
    names = ("tickets", "ticket_events", "comments", "users", "organizations", "satisfaction_ratings")
    return ZendeskExport(*(fixture_export("zendesk", name, (name,)) for name in names))


@pytest.fixture
def copy(tmp_path) -> Path:
    return copy_fixtures("zendesk", tmp_path)


def _edit(path: Path, key: str, record_id: int, field: str, value) -> None:
    page = json.loads(path.read_text())
    for record in page[key]:
        if record["id"] == record_id:
            record[field] = value
    path.write_text(json.dumps(page))


def one_line_error(base: Path, **options) -> str:
    return one_line_error_of(lambda: read(base, **options))


def test_a_bad_timestamp_names_the_file_the_record_and_the_field(copy):
    _edit(copy / "zendesk/tickets/page-1.json", "tickets", 1043, "created_at", "x")
    assert one_line_error(copy) == (
        "zendesk/tickets/page-1.json ticket 1043: field 'created_at' value 'x' is not a timestamp (expected ISO 8601 or epoch seconds)"
    )


def test_a_bad_comment_time(copy):
    path = copy / "zendesk/comments/1042.json"
    page = json.loads(path.read_text())
    page["comments"][2]["created_at"] = "2024-13-45"
    path.write_text(json.dumps(page))
    assert one_line_error(copy).startswith(
        "zendesk/comments/1042.json comment 10423: field 'created_at' value '2024-13-45' is not"
    )


def test_an_unmapped_priority(copy):
    _edit(copy / "zendesk/tickets/page-2.json", "tickets", 1048, "priority", "p0")
    assert one_line_error(copy).startswith(
        "zendesk/tickets/page-2.json ticket 1048: field 'priority' value 'p0' is not a priority"
    )


def test_a_comment_without_its_ticket(copy):
    (copy / "zendesk/comments/extra.json").write_text(
        json.dumps([{"id": 1, "author_id": 9001, "body": "hi", "created_at": "2024-03-04T10:00:00Z"}])
    )
    assert one_line_error(copy) == "zendesk/comments/extra.json comment 1: field 'ticket_id' is missing"


def test_broken_json_and_missing_files(copy):
    (copy / "zendesk/users.json").write_text('{"users": [{"id": 1,}]}')
    assert (
        one_line_error(copy)
        == "zendesk/users.json: not valid JSON (Expecting property name enclosed in double quotes at line 1 column 21)"
    )
    assert "zendesk.users: " in one_line_error(copy, users="people.json")


def test_json_lines_of_pages_are_read(copy):
    pages = [json.loads(p.read_text()) for p in sorted((copy / "zendesk/tickets").glob("*.json"))]
    shutil.rmtree(copy / "zendesk/tickets")
    (copy / "zendesk/tickets.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pages))
    assert len(read_zendesk(ZendeskSource(folder="zendesk"), copy)["tickets"]) == 5


def test_options_are_checked():
    with pytest.raises(ValidationError, match="unknown key 'categry'"):
        ZendeskSource.model_validate({"categry": {}})
    with pytest.raises(ValidationError, match="map.problem: 'defect' is not allowed"):
        ZendeskSource.model_validate({"category": {"map": {"problem": "defect"}}})
    with pytest.raises(ValidationError, match="voice: 'call' is not allowed"):
        ZendeskSource.model_validate({"channels": {"voice": "call"}})
    with pytest.raises(ValidationError, match="expected organization.id"):
        ZendeskSource.model_validate({"account_id": "external_id"})


def test_no_ticket_with_an_account_gives_empty_tables_not_a_crash(tmp_path):
    """Organisations missing from the export: no ticket can be given an account."""
    base = copy_fixtures("zendesk", tmp_path)
    (base / "zendesk" / "organizations.json").write_text("[]")
    tables = read(base, account_id="organization.external_id")
    assert ticket_table_counts(tables) == {"tickets": 0, "ticket_events": 0, "ticket_messages": 0}
