"""Zendesk Support exports -> tickets, ticket_events, ticket_messages.

Exports read (each a file or a folder of pages, under `folder`; only tickets is required):
the incremental tickets export (`{"tickets": [...], "end_of_stream": ...}`), the incremental
ticket events export (audits with `child_events`, optionally with the `comment_events` sideload),
ticket comments (records with `ticket_id`, or one file per ticket named by its id, as
/api/v2/tickets/{id}/comments returns them), users, organizations and satisfaction ratings.

Every fact keeps its own time (docs/data.md): a ticket's status changes become
resolved / reopened events when they happened, CSAT is dated when the customer answered, and
the ticket's final state (status, satisfaction_rating) is never used as a fact.

Choices, and why:
- Merged tickets (closed with the `closed_by_merge` tag, or via.source.rel "merge") are dropped
  with their events, comments and ratings. Zendesk copies the source's last comment into the
  target ticket, so the conversation lives on there; keeping the source would count one contact
  twice and read its merge closure as a resolution nobody worked for.
- Tickets with status "deleted" and tickets whose organisation maps to no account are dropped
  (logged with a count and examples).
- A comment whose author is missing from the users export (a deleted user) is the customer's
  when the author is the ticket's requester, and otherwise follows `deleted_authors` (default
  customer: Zendesk asks for an agent to be downgraded before deletion, so deleted users are
  almost always end users). Without a users export, the requester is the customer and every
  other author an agent, unless `agents` says otherwise.
- A satisfaction rating is dated by its `updated_at` (when it was scored; `created_at` is when
  the survey was offered); "offered" and "unoffered" are not answers and are ignored.
- first_response is the first public agent comment after the ticket was created (an agent's
  comment that opens a ticket is the ticket's description, not a response).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from core.vocabulary import PRIORITIES
from ingest._export import (
    FILE,
    Options,
    Paths,
    Section,
    account_key,
    accounts_of,
    as_id,
    check_values,
    column,
    event_frame,
    explode,
    latest,
    read_option,
    require,
    strip_html,
    timestamps,
    warn_dropped,
)
from ingest._helpdesk import (
    CategoryMap,
    ChannelMap,
    ValueMap,
    map_category,
    map_channel,
    map_priority,
    map_tag_category,
    resolution_events,
    ticket_tables,
)

SOLVED = ("solved", "closed")
UNSOLVED = ("new", "open", "pending", "hold")
AGENT_ROLES = ("agent", "admin")
#: via.channel -> contract channel; any channel not listed (api, mobile, web_widget, rule, ...) is web
DEFAULT_CHANNELS = {"email": "email", "chat": "chat", "native_messaging": "chat", "sms": "chat", "voice": "phone"}


class Category(CategoryMap):
    """Where a ticket's category comes from and how its values map to the contract's categories."""

    source: Literal["type", "tags", "field"] = Field("type", alias="from")
    #: the custom field's id when `from: field`
    field_id: int | None = None
    #: source value (ticket type, tag, field value) -> category; for tags the first listed tag that maps wins
    map: dict[str, str] = {"question": "how_to", "incident": "technical", "problem": "bug", "task": "technical"}

    @model_validator(mode="after")
    def _field_id(self) -> Category:
        if self.source == "field" and self.field_id is None:
            raise ValueError("from: field needs field_id (the custom field's id)")
        return self


class Priority(ValueMap):
    """Zendesk's own priority field (low/normal/high/urgent), or a custom field with a value map."""

    allowed = PRIORITIES
    field_id: int | None = None
    #: for tickets without a priority (Zendesk leaves it null unless an agent sets it)
    default: str = "normal"


class Agents(Options):
    """Who is an agent besides users with role agent or admin (e.g. a bot, or a deleted agent)."""

    ids: list[str] = []
    email_domains: list[str] = []

    @field_validator("ids", mode="before")
    @classmethod
    def _text(cls, value: list) -> list:
        return [str(v) for v in value] if isinstance(value, list) else value


class ZendeskSource(Section):
    """The `zendesk:` section of the mapping file."""

    section = "zendesk"
    tickets: Paths = ["tickets"]
    ticket_events: Paths = ["ticket_events"]
    comments: Paths = ["comments"]
    users: Paths = ["users"]
    organizations: Paths = ["organizations"]
    satisfaction_ratings: Paths = ["satisfaction_ratings"]
    #: organization.id, organization.external_id or organization.organization_fields.<key>
    account_id: str = "organization.id"
    category: Category = Category()
    priority: Priority = Priority()
    #: via.channel -> channel, over DEFAULT_CHANNELS
    channels: ChannelMap = {}
    agents: Agents = Agents()
    #: satisfaction score -> CSAT 1-5
    csat: dict[str, int] = {"good": 5, "bad": 1}
    #: keep internal (private) comments as messages too
    private_comments: bool = False
    deleted_authors: Literal["customer", "drop"] = "customer"

    @field_validator("account_id")
    @classmethod
    def _organization_field(cls, value: str) -> str:
        if not value.startswith("organization.") or value == "organization.":
            raise ValueError(
                "expected organization.id, organization.external_id or organization.organization_fields.<key>"
            )
        return value

    @field_validator("csat")
    @classmethod
    def _scores(cls, value: dict[str, int]) -> dict[str, int]:
        check_values(value, range(1, 6))
        return value


@dataclass(frozen=True)
class ZendeskExport:
    """The raw exports, flattened (one row per record, `_file` naming its file)."""

    tickets: pd.DataFrame
    ticket_events: pd.DataFrame
    comments: pd.DataFrame
    users: pd.DataFrame
    organizations: pd.DataFrame
    satisfaction_ratings: pd.DataFrame


def read_zendesk(source: ZendeskSource, base_dir: Path) -> dict[str, pd.DataFrame]:
    """Read the Zendesk exports named by `source` (paths relative to base_dir) and map them."""
    export = ZendeskExport(
        tickets=read_option(source, "tickets", base_dir, required=True),
        ticket_events=read_option(source, "ticket_events", base_dir, ("ticket_events", "audits")),
        comments=read_option(source, "comments", base_dir),
        users=read_option(source, "users", base_dir),
        organizations=read_option(source, "organizations", base_dir),
        satisfaction_ratings=read_option(source, "satisfaction_ratings", base_dir),
    )
    return map_zendesk(export, source)


def map_zendesk(export: ZendeskExport, source: ZendeskSource) -> dict[str, pd.DataFrame]:
    """The contract tables from the flattened exports (pure: frames in, frames out)."""
    tickets = map_tickets(export.tickets, export.organizations, source)
    children = audit_children(export.ticket_events)
    comments = map_comments(export.comments, children, tickets, export.users, source)
    events = pd.concat(
        [
            status_events(children),
            transfers(children),
            first_responses(comments, tickets),
            csat_events(export.satisfaction_ratings, children, source),
        ],
        ignore_index=True,
    )
    public = comments["public"] | source.private_comments
    messages = comments[public.to_numpy()].rename(columns={"comment_id": "message_id", "at": "sent_at"})
    return ticket_tables(tickets, events, messages)


def map_tickets(raw: pd.DataFrame, organizations: pd.DataFrame, source: ZendeskSource) -> pd.DataFrame:
    """Tickets with the contract's columns plus requester_id; merged, deleted and unmapped ones out."""
    t = latest(raw, "id", "updated_at").reset_index(drop=True)
    ticket_id = as_id(require(t, "id", "ticket"))
    merged = column(t, "tags").explode().eq("closed_by_merge").groupby(level=0).any().reindex(t.index, fill_value=False)
    merged |= column(t, "via.source.rel").eq("merge")
    deleted = column(t, "status").eq("deleted") & ~merged
    account = _accounts(t, organizations, source)
    unmapped = account.isna() & ~merged & ~deleted
    warn_dropped("zendesk tickets", int(merged.sum()), "merged into another ticket", ticket_id[merged])
    warn_dropped("zendesk tickets", int(deleted.sum()), "deleted", ticket_id[deleted])
    warn_dropped("zendesk tickets", int(unmapped.sum()), f"no account from {source.account_id}", ticket_id[unmapped])
    keep = ~(merged | deleted | unmapped).to_numpy()
    t, ticket_id, account = (
        t[keep].reset_index(drop=True),
        ticket_id[keep].reset_index(drop=True),
        account[keep].reset_index(drop=True),
    )
    return pd.DataFrame(
        {
            "ticket_id": ticket_id,
            "account_id": account,
            "created_at": timestamps(t, "created_at", "ticket"),
            "priority": _priority(t, source.priority),
            "category": _category(t, source.category),
            "channel": map_channel(column(t, "via.channel"), DEFAULT_CHANNELS, source.channels, "web"),
            "requester_id": as_id(column(t, "requester_id")),
        }
    )


def _accounts(t: pd.DataFrame, organizations: pd.DataFrame, source: ZendeskSource) -> pd.Series:
    key = account_key(source.account_id, "organization", organizations, "zendesk.account_id")
    return accounts_of(as_id(column(t, "organization_id")), key)


def _custom_field(t: pd.DataFrame, field_id: int) -> pd.Series:
    fields = explode(t.assign(_row=np.arange(len(t))), "custom_fields", {"_row": "_row"})
    if fields.empty or "id" not in fields.columns:
        return pd.Series(np.nan, index=t.index, dtype="object")
    hit = fields[as_id(fields["id"]) == str(field_id)]
    return pd.Series(hit["value"].to_numpy(), index=hit["_row"].to_numpy()).reindex(t.index)


def _category(t: pd.DataFrame, options: Category) -> pd.Series:
    if options.source == "tags":
        return map_tag_category(column(t, "tags"), options)
    return map_category(column(t, "type") if options.source == "type" else _custom_field(t, options.field_id), options)


def _priority(t: pd.DataFrame, options: Priority) -> pd.Series:
    raw = column(t, "priority") if options.field_id is None else _custom_field(t, options.field_id)
    field = "priority" if options.field_id is None else f"custom_fields[{options.field_id}]"
    return map_priority(
        t,
        raw,
        {**{p: p for p in PRIORITIES}, **options.map},
        default=options.default,
        field=field,
        noun="ticket",
        problem=f"is not a priority; map it under zendesk.priority.map to one of {', '.join(PRIORITIES)}",
    )


def audit_children(raw: pd.DataFrame) -> pd.DataFrame:
    """One row per child event of the ticket events export, with its audit's ticket, time and updater."""
    if raw.empty:
        return pd.DataFrame(columns=["audit_id", "ticket_id", "at", "updater_id", "kind", FILE])
    audits = latest(raw, "id").reset_index(drop=True)
    stamp = "created_at" if "created_at" in audits.columns else "timestamp"
    audits = audits.assign(
        _at=timestamps(audits, stamp, "ticket event"), ticket_id=as_id(require(audits, "ticket_id", "ticket event"))
    )
    children = explode(
        audits, "child_events", {"id": "audit_id", "ticket_id": "ticket_id", "_at": "at", "updater_id": "updater_id"}
    )
    # the events export names the kind in event_type, the ticket audits API in type
    return children.assign(kind=column(children, "event_type").fillna(column(children, "type")))


def _changes(children: pd.DataFrame, field: str) -> pd.DataFrame:
    """Changes of one ticket field: ticket_id, at, audit_id, new and previous value (as text)."""
    named = column(children, "field_name").eq(field)
    new = column(children, "value").where(named, column(children, field))
    is_change = children["kind"].isin(["Change", "Create"]) & (named | column(children, field).notna())
    rows = children[is_change.to_numpy()]
    return pd.DataFrame(
        {
            "ticket_id": rows["ticket_id"],
            "at": rows["at"],
            "audit_id": rows["audit_id"],
            "kind": rows["kind"],
            "new": as_id(new[is_change.to_numpy()]),
            "previous": as_id(column(rows, "previous_value")),
        }
    )


def status_events(children: pd.DataFrame) -> pd.DataFrame:
    """resolved when a ticket becomes solved or closed; reopened when it leaves solved/closed."""
    status = _changes(children, "status")
    was_solved = status["previous"].isin(SOLVED)
    resolved = status[status["new"].isin(SOLVED) & ~was_solved]
    reopened = status[was_solved & status["new"].isin(UNSOLVED)]
    return resolution_events(resolved, reopened)


def transfers(children: pd.DataFrame) -> pd.DataFrame:
    """transferred when the assignee or group moves from someone to someone else (one per update);
    the first assignment of an unassigned ticket is not a transfer."""
    moves = pd.concat([_changes(children, "assignee_id"), _changes(children, "group_id")], ignore_index=True)
    moved = moves[
        (moves["kind"] == "Change")
        & moves["previous"].notna()
        & moves["new"].notna()
        & (moves["new"] != moves["previous"])
    ]
    moved = moved.drop_duplicates(["ticket_id", "audit_id"])
    return event_frame("ticket_id", moved["ticket_id"], moved["at"], "transferred")


def map_comments(
    raw: pd.DataFrame, children: pd.DataFrame, tickets: pd.DataFrame, users: pd.DataFrame, source: ZendeskSource
) -> pd.DataFrame:
    """Every comment known: comment_id, ticket_id, at, public, author (customer/agent), body (null
    when only the events export's comment_present flag tells of it)."""
    parts = [_exported_comments(raw)]
    kind = column(children, "kind")
    sideloaded = children[
        (kind == "Comment").to_numpy()
        & (column(children, "body").notna() | column(children, "html_body").notna()).to_numpy()
    ]
    flagged = children[column(children, "comment_present").astype("str").str.lower().eq("true").to_numpy()]
    for rows, public, author in ((sideloaded, "public", "author_id"), (flagged, "comment_public", "updater_id")):
        if len(rows):
            parts.append(
                pd.DataFrame(
                    {
                        "comment_id": as_id(rows["id"]) if "id" in rows else as_id(rows["audit_id"]),
                        "ticket_id": rows["ticket_id"],
                        "at": timestamps(rows, "created_at", "comment", required=False).fillna(rows["at"])
                        if "created_at" in rows
                        else rows["at"],
                        "public": ~column(rows, public).astype("str").str.lower().eq("false"),
                        "author_id": as_id(column(rows, author).fillna(column(rows, "updater_id"))),
                        "body": _body(rows),
                    }
                )
            )
    comments = pd.concat(parts, ignore_index=True).drop_duplicates("comment_id", keep="first")
    comments = comments[comments["ticket_id"].isin(tickets["ticket_id"])]
    author = _author_kinds(comments, tickets, users, source)
    return comments.assign(author=author)[author.notna().to_numpy()].reset_index(drop=True)


def _exported_comments(raw: pd.DataFrame) -> pd.DataFrame:
    if raw.empty:
        return pd.DataFrame(columns=["comment_id", "ticket_id", "at", "public", "author_id", "body"])
    c = latest(raw, "id").reset_index(drop=True)
    # /api/v2/tickets/{id}/comments pages carry no ticket_id: the file is named after the ticket
    from_file = c[FILE].str.extract(r"(?:^|/)(\d+)\.[a-z]+$")[0]
    c = c.assign(ticket_id=as_id(column(c, "ticket_id")).fillna(from_file))
    require(c, "ticket_id", "comment")
    return pd.DataFrame(
        {
            "comment_id": as_id(require(c, "id", "comment")),
            "ticket_id": c["ticket_id"],
            "at": timestamps(c, "created_at", "comment"),
            "public": ~column(c, "public").astype("str").str.lower().eq("false"),
            "author_id": as_id(require(c, "author_id", "comment")),
            "body": _body(c),
        }
    )


def _body(rows: pd.DataFrame) -> pd.Series:
    """Plain text: plain_body, else body, else html_body stripped; blank is no body."""
    text = column(rows, "plain_body").fillna(column(rows, "body")).fillna(strip_html(column(rows, "html_body")))
    text = text.astype("str").str.strip()
    return text.where(text.ne(""))


def _author_kinds(
    comments: pd.DataFrame, tickets: pd.DataFrame, users: pd.DataFrame, source: ZendeskSource
) -> pd.Series:
    """customer / agent per comment, or null for a deleted user's comment that is dropped."""
    author = comments["author_id"]
    requester = comments["ticket_id"].map(tickets.set_index("ticket_id")["requester_id"])
    is_requester = author.eq(requester)
    agents = set(source.agents.ids)
    kind = pd.Series("customer", index=comments.index, dtype="object")
    if users.empty:
        agent = author.isin(agents) | ~is_requester
    else:
        u = latest(users, "id")
        ids = as_id(u["id"])
        domains = tuple(f"@{d.lower().lstrip('@')}" for d in source.agents.email_domains)
        by_domain = (
            column(u, "email").astype("str").str.lower().str.endswith(domains).fillna(False) if domains else False
        )
        agents |= set(ids[(column(u, "role").isin(AGENT_ROLES) | by_domain).to_numpy()])
        agent = author.isin(agents)
        deleted = ~author.isin(set(ids)) & ~is_requester & ~agent
        if source.deleted_authors == "drop":
            kind[deleted.to_numpy()] = None
            warn_dropped(
                "zendesk comments",
                int(deleted.sum()),
                "author deleted (deleted_authors: drop)",
                comments["comment_id"][deleted],
            )
    kind[agent.to_numpy()] = "agent"
    return kind.astype("str")


def first_responses(comments: pd.DataFrame, tickets: pd.DataFrame) -> pd.DataFrame:
    """The first public agent comment after the ticket was created, per ticket."""
    # a join, not a map: with no ticket left, pandas cannot map onto an empty time column
    c = comments.merge(tickets[["ticket_id", "created_at"]], on="ticket_id")
    replies = c[(c["author"] == "agent").to_numpy() & c["public"].to_numpy() & (c["at"] > c["created_at"]).to_numpy()]
    first = replies.sort_values("at", kind="stable").drop_duplicates("ticket_id")
    return event_frame("ticket_id", first["ticket_id"], first["at"], "first_response")


def csat_events(ratings: pd.DataFrame, children: pd.DataFrame, source: ZendeskSource) -> pd.DataFrame:
    """CSAT from the satisfaction ratings export (or, without it, the audits' rating events)."""
    if not ratings.empty:
        r = latest(ratings, "id", "updated_at").reset_index(drop=True)
        scored = r.assign(
            ticket_id=as_id(require(r, "ticket_id", "satisfaction rating")),
            at=timestamps(r, "updated_at", "satisfaction rating", required=False).fillna(
                timestamps(r, "created_at", "satisfaction rating")
            ),
        )
    else:
        scored = children[column(children, "kind").eq("SatisfactionRating").to_numpy()]
    value = column(scored, "score").map(source.csat)
    answered = scored[value.notna().to_numpy()]
    return event_frame("ticket_id", answered["ticket_id"], answered["at"], "csat", value.dropna())
