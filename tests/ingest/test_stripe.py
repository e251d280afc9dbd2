"""Stripe exports -> accounts, churn, account_events (ingest/stripe.py).

The fixtures (tests/ingest/fixtures/stripe/) follow the API's customer, subscription, invoice,
charge and dispute objects: amounts in cents (and yen, which have none), euros, a trial, a
quarterly price, a cancellation at period end (exported twice: active, then ended), a customer who
left and came back, one who switched plans, one scheduled to cancel, a trial never paid, a
deleted customer, an invoice in the 2025 API shape, a proration, a failed renewal, disputes whose
customer is found three ways and one that is not found.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from core.contracts import BILLING, validate_tables
from ingest._revenue import arr_changes
from ingest.stripe import TERMS, StripeExport, StripeSource, map_stripe, read_stripe
from tests.ingest._helpers import (
    FIXTURES,
    assert_leaves_inputs_alone,
    copy_fixtures,
    events_of,
    fixture_export,
    one_line_error_of,
    utc,
)

FX = {"eur": 1.08, "jpy": 0.0067}
BILLING_TABLES = ("accounts", "churn", "account_events")


def read(base: Path = FIXTURES, **options) -> dict[str, pd.DataFrame]:
    return read_stripe(StripeSource(folder="stripe", **{"fx_to_usd": FX, **options}), base)


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    return read()


@pytest.fixture(scope="module")
def accounts(tables) -> pd.DataFrame:
    return tables["accounts"].set_index("account_id")


def test_the_tables_meet_the_contracts(tables):
    # needs the contract extension: quarterly billing, free-text segment ("unknown"), renewal_date
    clean = validate_tables(tables, tables=BILLING_TABLES)
    assert {t: len(clean[t]) for t in BILLING_TABLES} == {"accounts": 9, "churn": 2, "account_events": 9}
    assert clean["accounts"]["renewal_date"].notna().all()


def test_every_term_is_a_contract_term():
    assert set(TERMS.values()) <= set(BILLING)


def test_only_customers_who_paid_are_accounts(accounts):
    # cus_F: trial only
    assert sorted(accounts.index) == ["cus_A", "cus_B", "cus_C", "cus_D", "cus_E", "cus_G", "cus_H", "cus_I", "cus_J"]


def test_cents_to_usd_annualised_at_contract(accounts):
    acme = accounts.loc["cus_A"]
    # 25 seats x EUR 480.00 a year x 1.08: the first invoice's quantity, not today's 30
    assert acme["arr"] == pytest.approx(12960.0) and acme["seats"] == 25
    assert acme["billing"] == "annual" and acme["plan"] == "Business annual"
    assert accounts.loc["cus_B", "arr"] == pytest.approx(6000.0)  # 10 x $50.00 a month
    assert accounts.loc["cus_J", "arr"] == pytest.approx(4020.0)  # JPY has no cents: 50,000 yen x 0.0067 x 12
    assert accounts.loc["cus_B", "renewal_date"] == utc("2023-07-01")


def test_a_trial_is_not_the_contract(accounts):
    initech = accounts.loc["cus_C"]
    assert initech["contract_start"] == utc("2024-01-15")  # trial_end; the trial started 2024-01-01
    assert initech["billing"] == "quarterly"  # month x 3
    assert initech["arr"] == pytest.approx(3600.0)  # $900 a quarter
    assert initech["renewal_date"] == utc("2024-04-15")


def test_fields_stripe_does_not_know(accounts):
    assert accounts.loc["cus_A", ["segment", "industry", "region", "csm_owner"]].tolist() == [
        "enterprise",
        "manufacturing",
        "DE",
        "dana",
    ]
    assert accounts.loc["cus_C", ["segment", "industry", "region"]].tolist() == ["unknown", "unknown", "unknown"]
    assert pd.isna(accounts.loc["cus_C", "csm_owner"]) and not accounts["exec_sponsor"].any()
    assert accounts.loc["cus_G", "name"] == "cus_G"  # a deleted customer keeps its history
    overridden = read(segment="enterprise", exec_sponsor=True, plan={"field": "metadata.segment"})[
        "accounts"
    ].set_index("account_id")
    assert set(overridden["segment"]) == {"enterprise"} and overridden["exec_sponsor"].all()
    # a customer field first, else the price's nickname
    assert overridden.loc["cus_A", "plan"] == "enterprise" and overridden.loc["cus_C", "plan"] == "Growth quarterly"


def test_churn(tables):
    churn = dict(zip(tables["churn"]["account_id"], tables["churn"]["churned_at"], strict=True))
    # cancel_at_period_end: churned when the period ended, not on the day it was asked for (2024-02-10)
    assert churn == {"cus_D": utc("2024-03-01"), "cus_G": utc("2023-12-01")}
    # cus_E left and came back; cus_I switched plans; cus_H is scheduled to cancel but still live


def test_arr_changes_and_billing_events(tables):
    assert events_of(tables, "cus_A") == [
        ("upgrade", utc("2024-01-15 10:00"), pytest.approx(2592.0)),  # 5 more seats at the renewal
        ("payment_failed", utc("2024-01-15 11:00"), None),  # paid at the second attempt
    ]
    assert events_of(tables, "cus_B") == [
        ("payment_failed", utc("2023-07-01 01:00"), None),
        ("billing_dispute", utc("2023-07-20 14:00"), None),  # its charge is on an invoice
        ("downgrade", utc("2023-08-01"), pytest.approx(-2400.0)),  # 10 -> 6 seats (an invoice in the 2025 API shape)
        ("billing_dispute", utc("2023-09-02 09:30"), None),  # the charge was expanded
        ("upgrade", utc("2023-09-15"), pytest.approx(1200.0)),  # an add-on subscription
    ]
    assert events_of(tables, "cus_E") == [("billing_dispute", utc("2024-01-05"), None)]  # through the charges export
    # a plan switch
    assert events_of(tables, "cus_I") == [("upgrade", utc("2023-10-01 12:00:30"), pytest.approx(1200.0))]
    assert events_of(tables, "cus_H") == []  # a failed one-off invoice before the contract started


def test_accounts_from_customer_metadata(caplog):
    with caplog.at_level("WARNING"):
        out = read(account_id="customer.metadata.account_id")
    assert sorted(out["accounts"]["account_id"]) == [
        "ACC-001",
        "ACC-002",
        "ACC-003",
        "ACC-004",
        "ACC-005",
        "ACC-008",
        "ACC-009",
        "ACC-010",
    ]
    assert list(out["churn"]["account_id"]) == ["ACC-004"]
    assert "cus_G" in caplog.text  # the deleted customer has no account id: left out, and said so
    validate_tables(out, tables=BILLING_TABLES)


def test_a_plan_switch_needs_the_gap():
    out = read(switch_gap_days=0)  # 30 seconds between the two subscriptions: an end, then a new start
    assert events_of(out, "cus_I") == [] and "cus_I" not in set(out["churn"]["account_id"])


def test_the_timeline_on_its_own():
    at = [utc("2024-01-01"), utc("2024-02-01"), utc("2024-02-01 00:00:10"), utc("2024-06-01"), utc("2024-09-01")]
    points = pd.DataFrame(
        {"account_id": "a", "at": at, "live": [1, -1, 1, -1, 1], "d_arr": [100.0, -100.0, 150.0, -150.0, 90.0]}
    )
    out = arr_changes(points, switch_gap_days=1)
    assert out["start"].tolist() == [True, False, False, True]
    assert out["change"].tolist() == [False, True, False, False] and out.loc[1, "d_arr"] == 50.0
    # an end with a later start: not the last row, so no churn
    assert out["end"].tolist() == [False, False, True, False]


def test_the_mapper_leaves_its_inputs_alone():
    names = ("customers", "subscriptions", "invoices", "disputes", "charges")
    export = StripeExport(*(fixture_export("stripe", name, (name,)) for name in names))
    assert_leaves_inputs_alone(export, lambda e: map_stripe(e, StripeSource(fx_to_usd=FX)))


# --- bad input -------------------------------------------------------------------------------


@pytest.fixture
def copy(tmp_path) -> Path:
    return copy_fixtures("stripe", tmp_path)


def one_line_error(base: Path, **options) -> str:
    return one_line_error_of(lambda: read(base, **options))


def _edit_subscription(base: Path, subscription_id: str, change) -> None:
    for path in (base / "stripe/subscriptions").glob("*.json"):
        page = json.loads(path.read_text())
        for record in page["data"]:
            if record["id"] == subscription_id:
                change(record)
        path.write_text(json.dumps(page))


def test_a_currency_without_a_rate_is_named(copy):
    assert one_line_error(copy, fx_to_usd={"eur": 1.08}) == (
        "stripe/subscriptions/page-2.json subscription sub_J1: field 'currency' value 'jpy' has no rate in stripe.fx_to_usd; "
        "add its USD value per unit, e.g. fx_to_usd: {eur: 1.08}"
    )


def test_a_first_subscription_on_no_contract_term(copy):
    _edit_subscription(
        copy, "sub_C1", lambda s: s["items"]["data"][0]["price"]["recurring"].update(interval="week", interval_count=2)
    )
    assert one_line_error(copy) == (
        "stripe/subscriptions/page-1.json subscription sub_C1: field 'price.recurring' value 'every 2 week' is not a contract term; "
        "expected one of (months per period): monthly (1), quarterly (3), semiannual (6), annual (12), biennial (24), triennial (36)"
    )


def test_a_bad_timestamp(copy):
    _edit_subscription(copy, "sub_B1", lambda s: s.update(start_date="soon"))
    assert one_line_error(copy) == (
        "stripe/subscriptions/page-1.json subscription sub_B1: field 'start_date' value 'soon' is not a timestamp "
        "(expected ISO 8601 or epoch seconds)"
    )


def test_a_subscription_without_a_customer(copy):
    _edit_subscription(copy, "sub_H1", lambda s: s.update(customer=None))
    assert one_line_error(copy) == "stripe/subscriptions/page-2.json subscription sub_H1: field 'customer' is missing"


def test_options_are_checked():
    with pytest.raises(ValidationError, match="unknown key 'fx'"):
        StripeSource.model_validate({"fx": {"eur": 1.1}})
    with pytest.raises(ValidationError, match="positive"):
        StripeSource.model_validate({"fx_to_usd": {"eur": 0}})
    with pytest.raises(ValidationError, match="expected customer.id"):
        StripeSource.model_validate({"account_id": "metadata.account_id"})
