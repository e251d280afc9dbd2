"""What the help-desk connectors (ingest/zendesk.py, ingest/intercom.py) share: mapping a vendor's
categories, priorities and channels onto the contract's values, and assembling the tickets,
ticket_events and ticket_messages tables from the records each connector normalised.

A connector hands over
- tickets: the contract's columns (others, such as Zendesk's requester_id, are left out);
- events: rows of `event_frame("ticket_id", ...)`;
- messages: message_id, ticket_id, sent_at, author, body; only the contract's authors (customer,
  agent) with a body are messages: a redacted, attachment-only or system part carries none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, ClassVar

import pandas as pd
from pydantic import AfterValidator, model_validator

from core.contracts import CONTRACTS
from core.vocabulary import AUTHORS, CHANNELS, TICKET_CATEGORIES
from ingest._export import Options, check_values, event_frame, fail, first_mapped

TICKET_COLUMNS = CONTRACTS["tickets"].column_names
MESSAGE_COLUMNS = CONTRACTS["ticket_messages"].column_names


def _channels(value: dict[str, str]) -> dict[str, str]:
    check_values(value, CHANNELS)
    return value


#: vendor channel -> contract channel, over the connector's defaults
ChannelMap = Annotated[dict[str, str], AfterValidator(_channels)]


class ValueMap(Options):
    """Vendor values -> one of the contract's `allowed` values, and the `default` for a ticket
    without a value the map knows."""

    allowed: ClassVar[tuple[str, ...]]
    map: dict[str, str] = {}
    default: str

    @model_validator(mode="after")
    def _allowed(self) -> ValueMap:
        check_values(self.map, self.allowed, "map")
        check_values({"default": self.default}, self.allowed)
        return self


class CategoryMap(ValueMap):
    """Vendor values (ticket type, tag, field value) -> the contract's categories. A connector adds
    where the values come `from`."""

    allowed = TICKET_CATEGORIES
    default: str = "technical"


def map_category(values: pd.Series, options: CategoryMap) -> pd.Series:
    """The category of each ticket from one vendor value per ticket (unmapped or missing: the default)."""
    return _or_default(values.astype("str").map(options.map).where(values.notna()), options.default)


def map_tag_category(tags: pd.Series, options: CategoryMap, *, key: str | None = None) -> pd.Series:
    """The category of each ticket from its list of tags: the first tag the map knows wins, else the
    default. With `key`, tags are objects and their `key` field is the tag."""
    return _or_default(first_mapped(tags, options.map, key=key), options.default)


def _or_default(mapped: pd.Series, default: str) -> pd.Series:
    return mapped.astype("object").fillna(default).astype("str")


def map_priority(
    frame: pd.DataFrame, raw: pd.Series, known: Mapping[str, str], *, default: str, field: str, noun: str, problem: str
) -> pd.Series:
    """Vendor priorities (as text) -> the contract's by `known`; a value it lacks is an error on the
    record's `field` (`problem` says where to map it), a missing one is `default`."""
    text = raw.astype("str").where(raw.notna())
    mapped = text.map(known)
    fail(frame.assign(**{field: raw}), (text.notna() & mapped.isna()).to_numpy(), field, noun, problem)
    return _or_default(mapped, default)


def map_channel(raw: pd.Series, defaults: Mapping[str, str], channels: Mapping[str, str], other: str) -> pd.Series:
    """Vendor channels -> the contract's: the section's `channels` over the connector's defaults;
    any channel neither names (and a missing one) is `other`."""
    return raw.map({**defaults, **channels}).fillna(other)


def resolution_events(resolved: pd.DataFrame, reopened: pd.DataFrame) -> pd.DataFrame:
    """resolved and reopened events at the (ticket_id, at) of the rows where each happened."""
    return pd.concat(
        [
            event_frame("ticket_id", resolved["ticket_id"], resolved["at"], "resolved"),
            event_frame("ticket_id", reopened["ticket_id"], reopened["at"], "reopened"),
        ],
        ignore_index=True,
    )


def ticket_tables(tickets: pd.DataFrame, events: pd.DataFrame, messages: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """tickets, ticket_events and ticket_messages: events and messages of the tickets kept, each
    event once, messages by the contract's authors with a body; ordered by time within a ticket."""
    kept = tickets["ticket_id"]
    events = (
        events[events["ticket_id"].isin(kept)].drop_duplicates().sort_values(["ticket_id", "at", "kind"], kind="stable")
    )
    written = messages["author"].isin(AUTHORS) & messages["body"].notna() & messages["body"].ne("")
    messages = messages[messages["ticket_id"].isin(kept).to_numpy() & written.to_numpy()]
    messages = messages.sort_values(["ticket_id", "sent_at"], kind="stable")
    tickets = tickets.sort_values(["created_at", "ticket_id"], kind="stable")
    return {
        "tickets": tickets[TICKET_COLUMNS].reset_index(drop=True),
        "ticket_events": events.reset_index(drop=True),
        "ticket_messages": messages[MESSAGE_COLUMNS].reset_index(drop=True),
    }
