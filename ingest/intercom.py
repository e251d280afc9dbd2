"""Intercom exports -> tickets, ticket_events, ticket_messages.

Exports read (each a file or a folder of pages, under `folder`): conversations as the API returns
them one by one (GET /conversations/{id}: with `conversation_parts`, `statistics` and
`conversation_rating`; a JSON array, JSON Lines or `{"type": "conversation.list", ...}` pages),
contacts (to find a conversation's company) and companies (when the account key is a company
field other than Intercom's id). Times are epoch seconds.

A conversation is a ticket; its opening message (`source`) and every part with a body except notes
are messages; parts become events when they happen:
- close -> resolved (a second close without a reopen in between is not a second resolution);
- open, assign_and_reopen, or a customer writing into a closed conversation (Intercom reopens it
  then) -> reopened;
- an assignment from one teammate or team to another -> transferred (a first assignment is not);
- `statistics.first_admin_reply_at` -> first_response, or without statistics the first part a
  teammate wrote after the conversation started;
- `conversation_rating.rating` (1-5) -> csat at `conversation_rating.created_at`; an export
  without that time dates it at the conversation's `updated_at`, never earlier than the answer.

Choices, and why:
- Bots (Fin, Operator, workflows) are not agents by default: their automatic "we'll reply soon"
  messages would read as agent replies the customer never answered, and the first response is
  a teammate's (`bot_messages: true` keeps them as agent messages).
- Notes are internal: never messages. HTML bodies are reduced to text; empty (redacted or
  attachment-only) parts carry no message.
- The company is the first company of the conversation's contact (the author of the opening
  message, or the first contact of an outbound conversation); a conversation without one is
  left out (logged).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from core.vocabulary import PRIORITIES
from ingest._export import (
    Paths,
    Section,
    account_key,
    accounts_of,
    as_id,
    check_values,
    column,
    entity_key,
    event_frame,
    explode,
    fail,
    latest,
    numbers,
    read_option,
    require,
    strip_html,
    timestamps,
    warn_dropped,
)
from ingest._helpdesk import (
    CategoryMap,
    ChannelMap,
    map_category,
    map_channel,
    map_priority,
    map_tag_category,
    resolution_events,
    ticket_tables,
)

log = logging.getLogger(__name__)

CUSTOMER_TYPES = ("user", "lead", "contact")
AGENT_TYPES = ("admin", "team")
REOPENING_PARTS = ("open", "assign_and_reopen", "note_and_reopen")
ASSIGNMENT_PARTS = (
    "assignment",
    "assign_and_reopen",
    "assign_and_unassign",
    "away_mode_assignment",
    "default_assignment",
)
#: source.type -> contract channel; any other (messenger conversation, push, social) is chat
DEFAULT_CHANNELS = {"email": "email", "phone_call": "phone", "call": "phone", "phone": "phone"}


class Category(CategoryMap):
    """Where a conversation's category comes from: its tags (the first that maps wins) or a
    conversation attribute (`custom_attributes.<attribute>`)."""

    source: Literal["tags", "attribute"] = Field("tags", alias="from")
    attribute: str | None = None

    @model_validator(mode="after")
    def _attribute(self) -> Category:
        if self.source == "attribute" and not self.attribute:
            raise ValueError("from: attribute needs attribute (the conversation attribute's name)")
        return self


class IntercomSource(Section):
    """The `intercom:` section of the mapping file."""

    section = "intercom"
    conversations: Paths = ["conversations"]
    contacts: Paths = ["contacts"]
    companies: Paths = ["companies"]
    #: company.id, company.company_id, company.custom_attributes.<key>, contact.external_id or contact.custom_attributes.<key>
    account_id: str = "company.id"
    category: Category = Category()
    #: Intercom's priority flag -> priority
    priority: dict[str, str] = {"priority": "high", "not_priority": "normal"}
    #: source.type -> channel, over DEFAULT_CHANNELS
    channels: ChannelMap = {}
    bot_messages: bool = False

    @field_validator("account_id")
    @classmethod
    def _entity(cls, value: str) -> str:
        if not value.startswith(("company.", "contact.")) or value.endswith("."):
            raise ValueError(
                "expected company.id, company.company_id, company.custom_attributes.<key>, contact.external_id or contact.<field>"
            )
        return value

    @field_validator("priority")
    @classmethod
    def _priorities(cls, value: dict[str, str]) -> dict[str, str]:
        check_values(value, PRIORITIES)
        return value


@dataclass(frozen=True)
class IntercomExport:
    """The raw exports, flattened (one row per record, `_file` naming its file)."""

    conversations: pd.DataFrame
    contacts: pd.DataFrame
    companies: pd.DataFrame


def read_intercom(source: IntercomSource, base_dir: Path) -> dict[str, pd.DataFrame]:
    """Read the Intercom exports named by `source` (paths relative to base_dir) and map them."""
    export = IntercomExport(
        conversations=read_option(source, "conversations", base_dir, required=True),
        contacts=read_option(source, "contacts", base_dir),
        companies=read_option(source, "companies", base_dir),
    )
    return map_intercom(export, source)


def map_intercom(export: IntercomExport, source: IntercomSource) -> dict[str, pd.DataFrame]:
    """The contract tables from the flattened exports (pure: frames in, frames out)."""
    conv = latest(export.conversations, "id", "updated_at").reset_index(drop=True)
    conv = conv.assign(
        ticket_id=as_id(require(conv, "id", "conversation")), created=timestamps(conv, "created_at", "conversation")
    )
    account = conversation_accounts(conv, export.contacts, export.companies, source)
    warn_dropped(
        "intercom conversations",
        int(account.isna().sum()),
        f"no account from {source.account_id}",
        conv["ticket_id"][account.isna()],
    )
    conv = conv.assign(account_id=account)[account.notna().to_numpy()].reset_index(drop=True)
    if len(conv) and "conversation_parts.conversation_parts" not in conv.columns:
        log.warning(
            "intercom conversations: none has conversation_parts (the list endpoint leaves them out; export each with "
            "GET /conversations/{id}): only opening messages, statistics and ratings are used"
        )
    parts = conversation_parts(conv)
    tickets = pd.DataFrame(
        {
            "ticket_id": conv["ticket_id"],
            "account_id": conv["account_id"],
            "created_at": conv["created"],
            "priority": map_priority(
                conv,
                column(conv, "priority"),
                source.priority,
                default="normal",
                field="priority",
                noun="conversation",
                problem="is not mapped; add it under intercom.priority",
            ),
            "category": _category(conv, source.category),
            "channel": map_channel(column(conv, "source.type"), DEFAULT_CHANNELS, source.channels, "chat"),
        }
    )
    events = pd.concat(
        [state_events(parts), transfers(parts), first_responses(conv, parts), csat_events(conv)], ignore_index=True
    )
    return ticket_tables(tickets, events, messages(conv, parts, source.bot_messages))


def conversation_accounts(
    conv: pd.DataFrame, contacts: pd.DataFrame, companies: pd.DataFrame, source: IntercomSource
) -> pd.Series:
    """The account of each conversation, through its contact (and the contact's first company)."""
    author_is_contact = column(conv, "source.author.type").isin(CUSTOMER_TYPES)
    listed = explode(conv.assign(_row=np.arange(len(conv))), "contacts.contacts", {"_row": "_row"}).drop_duplicates(
        "_row"
    )
    first_listed = pd.Series(
        as_id(column(listed, "id")).to_numpy(), index=column(listed, "_row").to_numpy(dtype="int64")
    ).reindex(conv.index)
    contact = as_id(column(conv, "source.author.id")).where(author_is_contact, first_listed)
    contacts = latest(contacts, "id").reset_index(drop=True)
    if source.account_id.startswith("contact."):
        return contact.map(entity_key(source.account_id, "contact", contacts, "intercom.account_id"))
    if contacts.empty:
        fail(
            conv,
            np.ones(len(conv), dtype=bool),
            "contacts",
            "conversation",
            "needs the contacts export (intercom.contacts) to find the conversation's company",
        )
    # the API has returned a contact's companies as {"data": [...]} and, earlier, {"companies": [...]}
    lists = column(contacts, "companies.data").fillna(column(contacts, "companies.companies"))
    owned = explode(
        contacts.assign(_companies=lists, _contact=as_id(contacts["id"])), "_companies", {"_contact": "_contact"}
    )
    owned = owned.drop_duplicates("_contact")
    company = contact.map(pd.Series(as_id(column(owned, "id")).to_numpy(), index=column(owned, "_contact").to_numpy()))
    return accounts_of(company, account_key(source.account_id, "company", companies, "intercom.account_id"))


def _category(conv: pd.DataFrame, options: Category) -> pd.Series:
    if options.source == "attribute":
        return map_category(column(conv, f"custom_attributes.{options.attribute}"), options)
    return map_tag_category(column(conv, "tags.tags"), options, key="name")


def conversation_parts(conv: pd.DataFrame) -> pd.DataFrame:
    """One row per conversation part: ticket_id, at, part_type, author (customer/agent/bot), body."""
    parts = explode(conv, "conversation_parts.conversation_parts", {"ticket_id": "ticket_id", "created": "created"})
    if parts.empty:
        return pd.DataFrame(
            columns=["part_id", "ticket_id", "at", "part_type", "author", "assignee", "body", "created"]
        )
    parts = parts.drop_duplicates(["ticket_id", "id"], keep="last")
    return (
        pd.DataFrame(
            {
                "part_id": as_id(parts["id"]),
                "ticket_id": parts["ticket_id"],
                "at": timestamps(parts, "created_at", "conversation part"),
                "part_type": column(parts, "part_type").astype("str"),
                "author": _author_kinds(column(parts, "author.type")),
                # "nobody_admin" is Intercom's unassigned: no one to transfer from or to
                "assignee": (
                    column(parts, "assigned_to.type").astype("str") + ":" + as_id(column(parts, "assigned_to.id"))
                ).where(
                    column(parts, "assigned_to.id").notna() & ~column(parts, "assigned_to.type").eq("nobody_admin")
                ),
                "body": strip_html(column(parts, "body")),
                "created": parts["created"],
            }
        )
        .sort_values(["ticket_id", "at"], kind="stable")
        .reset_index(drop=True)
    )


def _author_kinds(author_type: pd.Series) -> np.ndarray:
    """Intercom's author types -> customer / agent / bot (other types: system parts)."""
    choices = [author_type.isin(CUSTOMER_TYPES), author_type.isin(AGENT_TYPES), author_type.eq("bot")]
    return np.select(choices, ["customer", "agent", "bot"], "other")


def state_events(parts: pd.DataFrame) -> pd.DataFrame:
    """resolved / reopened from the parts that close or open the conversation."""
    closing = parts["part_type"].eq("close")
    opening = parts["part_type"].isin(REOPENING_PARTS) | (
        parts["part_type"].eq("comment") & parts["author"].eq("customer")
    )
    moves = parts[(closing | opening).to_numpy()].assign(closed=closing[closing | opening].to_numpy())
    was_closed = moves.groupby("ticket_id")["closed"].shift(fill_value=False).astype(bool)
    resolved = moves[moves["closed"] & ~was_closed]
    reopened = moves[~moves["closed"] & was_closed]
    return resolution_events(resolved, reopened)


def transfers(parts: pd.DataFrame) -> pd.DataFrame:
    """transferred when a conversation moves from one assignee to another."""
    assigned = parts[parts["part_type"].isin(ASSIGNMENT_PARTS).to_numpy() & parts["assignee"].notna().to_numpy()]
    previous = assigned.groupby("ticket_id")["assignee"].shift()
    moved = assigned[(previous.notna() & previous.ne(assigned["assignee"])).to_numpy()]
    return event_frame("ticket_id", moved["ticket_id"], moved["at"], "transferred")


def first_responses(conv: pd.DataFrame, parts: pd.DataFrame) -> pd.DataFrame:
    """statistics.first_admin_reply_at, or the first teammate's part with a body after the start."""
    stated = timestamps(conv, "statistics.first_admin_reply_at", "conversation", required=False, id_column="ticket_id")
    replies = parts[
        parts["author"].eq("agent").to_numpy()
        & parts["body"].notna().to_numpy()
        & parts["body"].ne("").to_numpy()
        & ~parts["part_type"].str.contains("note").to_numpy()
        & (parts["at"] > parts["created"]).to_numpy()
    ]
    computed = replies.drop_duplicates("ticket_id").set_index("ticket_id")["at"]
    at = stated.fillna(conv["ticket_id"].map(computed))
    has = at.notna().to_numpy()
    return event_frame("ticket_id", conv["ticket_id"][has], at[has], "first_response")


def csat_events(conv: pd.DataFrame) -> pd.DataFrame:
    """conversation_rating.rating (1-5), dated when the customer rated."""
    rating = numbers(conv, "conversation_rating.rating", "conversation", id_column="ticket_id")
    bad = rating.notna() & ~rating.isin([1, 2, 3, 4, 5])
    fail(conv, bad, "conversation_rating.rating", "conversation", "is not a rating from 1 to 5", id_column="ticket_id")
    rated_at = timestamps(conv, "conversation_rating.created_at", "conversation", required=False, id_column="ticket_id")
    at = rated_at.fillna(timestamps(conv, "updated_at", "conversation", required=False, id_column="ticket_id")).fillna(
        conv["created"]
    )
    has = rating.notna().to_numpy()
    return event_frame("ticket_id", conv["ticket_id"][has], at[has], "csat", rating[has].to_numpy())


def messages(conv: pd.DataFrame, parts: pd.DataFrame, bot_messages: bool) -> pd.DataFrame:
    """The opening message and every part, except notes (internal); bots' messages are the agent's
    when asked for, else no one's (ticket_tables keeps the customer's and agents' with a body)."""
    opening = pd.DataFrame(
        {
            "message_id": conv["ticket_id"] + ":source",
            "ticket_id": conv["ticket_id"],
            "sent_at": conv["created"],
            "author": _author_kinds(column(conv, "source.author.type")),
            "body": strip_html(column(conv, "source.body")),
        }
    )
    written = parts[~parts["part_type"].str.contains("note").to_numpy()]
    replies = pd.DataFrame(
        {
            "message_id": written["ticket_id"] + ":" + written["part_id"],
            "ticket_id": written["ticket_id"],
            "sent_at": written["at"],
            "author": written["author"],
            "body": written["body"],
        }
    )
    out = pd.concat([opening, replies], ignore_index=True)
    return out.assign(author=out["author"].replace({"bot": "agent" if bot_messages else "other"})).astype(
        {"author": "str", "body": "str"}
    )
