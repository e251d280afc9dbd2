"""The vocabulary is defined once: the contracts, the API schemas and the feature dictionary agree with it."""

from __future__ import annotations

from typing import get_args

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from core import vocabulary as v
from core.contracts import CONTRACTS
from core.errors import describe_validation


def test_contracts_allow_the_vocabulary_values():
    allowed = {(t.name, c.name): c.allowed for t in CONTRACTS.values() for c in t.columns if c.allowed}
    assert allowed[("tickets", "priority")] == v.PRIORITIES
    assert allowed[("tickets", "category")] == v.TICKET_CATEGORIES
    assert allowed[("tickets", "channel")] == v.CHANNELS
    assert allowed[("ticket_messages", "author")] == v.AUTHORS
    assert allowed[("account_events", "kind")] == v.ACCOUNT_EVENT_KINDS
    assert set(v.SCORED_EVENT_RANGES) <= set(v.TICKET_EVENT_KINDS)


def test_api_literals_are_the_vocabulary():
    from serving import schemas

    fields = {
        name: model.model_fields
        for name, model in vars(schemas).items()
        if isinstance(model, type) and issubclass(model, BaseModel)
    }
    assert get_args(fields["Ticket"]["category"].annotation) == v.TICKET_CATEGORIES
    assert get_args(fields["Ticket"]["priority"].annotation) == v.PRIORITIES
    assert get_args(fields["Message"]["author"].annotation) == v.AUTHORS
    assert set(get_args(fields["AccountScore"]["tier"].annotation)) == set(v.BANDS)
    assert get_args(fields["ExplainRequest"]["horizon_days"].annotation) == v.HORIZONS
    assert get_args(fields["FeedbackRequest"]["outcome"].annotation) == v.OUTCOMES
    assert list(fields["Curve"]) == list(v.CURVE_COLUMNS)


def test_feature_kinds_follow_the_vocabulary():
    from features.registry import feature_specs

    categorical = [name for name, spec in feature_specs().items() if spec.kind == "categorical"]
    assert categorical == list(v.CATEGORICAL)
    assert set(v.CATEGORICAL) <= {c.name for c in CONTRACTS["accounts"].columns if c.kind == "category"}


def test_derived_names_keep_their_order():
    assert v.HORIZONS == (30, 60, 90, 180)
    assert v.LABELS == tuple(f"churned_within_{h}d" for h in v.HORIZONS)
    assert v.BANDS == ("none", "watch", "high", "critical")


class _Example(BaseModel):
    model_config = ConfigDict(extra="forbid")
    days: int = 0


def test_one_formatter_for_validation_errors():
    with pytest.raises(ValidationError) as info:
        _Example(days="soon", colour=1)
    exc = info.value
    assert (
        describe_validation(exc)
        == "days: Input should be a valid integer, unable to parse string as an integer; colour: Extra inputs are not permitted"
    )
    assert describe_validation(exc, "key '{key}': {message}", prefix=("cfg",), got=True).startswith(
        "key 'cfg.days': Input should be a valid integer"
    )
    assert "(got 'soon')" in describe_validation(exc, got=True)
    assert describe_validation(exc, "setting '{key}' (env CHURN_{KEY}): {message}").startswith(
        "setting 'days' (env CHURN_DAYS)"
    )
    assert describe_validation(exc, names={"days": "--days"}, depth=1).startswith("--days: ")
