"""Stripe exports -> accounts, churn, account_events.

Exports read (each a file or a folder of pages, under `folder`; `{"object": "list", "data": [...]}`
pages, JSON arrays or JSON Lines): customers, subscriptions (with `items`), invoices (with
`lines`), disputes, and optionally charges (to find the customer of a dispute whose charge is not
on an exported invoice). Amounts are in the currency's smallest unit (cents; yen have none);
`fx_to_usd` converts other currencies, and a currency without a rate is an error naming it.

What each table holds, and why:
- accounts: one row per account that ever paid. `contract_start` is when the first subscription
  became paid (trial_end, not the trial's start: a trial is not a contract). `arr` is the ARR at
  that moment (USD, unit amount x quantity, annualised from the price's interval), `billing` the
  first subscription's term (month x 3 is quarterly), `renewal_date` its first renewal (the
  billing cycle anchor when it lies after the start, else start + one term). plan and seats come
  from the price (nickname, else product) and quantity; the fields Stripe does not know (segment,
  industry, region, csm_owner, exec_sponsor) from options: a customer field or a default.
- churn: an account whose last subscription ended with none live after it. The date is
  `ended_at` (for cancel_at_period_end, the period's end), never `canceled_at` (the request). A
  subscription still active with cancel_at_period_end has not churned yet: its end is in the
  export's future and would stretch the data's end. A customer who came back and is live at
  the end of the export is not churned (the gap is not recorded).
- account_events: payment_failed per invoice whose automatic payment failed at least once (dated
  when it was finalised: the first attempt), billing_dispute at the dispute's creation, upgrade /
  downgrade when the account's ARR changes while it stays live: between invoiced periods of a
  subscription (the new price is dated at the first period billed at it), between subscriptions
  that overlap, or when one subscription replaces another within `switch_gap_days`. value is the
  ARR change in USD (negative for a downgrade).

The ARR timeline behind accounts.arr, churn and upgrade / downgrade lives in ingest/_revenue.py;
this module reads Stripe's objects into the subscriptions and invoiced periods it takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import field_validator, model_validator

from core.vocabulary import TERM_MONTHS
from ingest._export import (
    FILE,
    Options,
    Paths,
    Section,
    account_key,
    accounts_of,
    as_id,
    column,
    event_frame,
    expandable,
    explode,
    fail,
    flag,
    latest,
    numbers,
    read_option,
    timestamps,
    warn_dropped,
)
from ingest._revenue import arr_changes, arr_events, arr_points, churn, contract_starts

#: months of a price's interval; week and day prices are annualised but are no contract term
INTERVAL_MONTHS = {"month": 1.0, "year": 12.0, "week": 12 / 52, "day": 12 / 365}
#: contract term (accounts.billing) of a subscription billed every N months
TERMS = {months: name for name, months in TERM_MONTHS.items()}
#: currencies whose amounts Stripe gives in whole units (no cents)
ZERO_DECIMAL = {
    "bif",
    "clp",
    "djf",
    "gnf",
    "jpy",
    "kmf",
    "krw",
    "mga",
    "pyg",
    "rwf",
    "ugx",
    "vnd",
    "vuv",
    "xaf",
    "xof",
    "xpf",
}
NEVER_PAID = ("incomplete", "incomplete_expired")
CYCLE_REASONS = ("subscription_create", "subscription_cycle")
BILLED = ("paid", "open", "uncollectible")
MONTH_DAYS = 365.25 / 12


class AccountField(Options):
    """An accounts column Stripe does not know: a customer field (dotted, e.g. metadata.segment or
    address.country), else the default. YAML accepts a bare value as the default."""

    field: str | None = None
    default: str | int | bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _scalar(cls, data: Any) -> Any:
        return data if isinstance(data, dict) else {"default": data}


class StripeSource(Section):
    """The `stripe:` section of the mapping file."""

    section = "stripe"
    customers: Paths = ["customers"]
    subscriptions: Paths = ["subscriptions"]
    invoices: Paths = ["invoices"]
    disputes: Paths = ["disputes"]
    charges: Paths = ["charges"]
    #: customer.id, customer.email or customer.metadata.<key>
    account_id: str = "customer.id"
    #: USD per unit of each currency (lower case ISO codes)
    fx_to_usd: dict[str, float] = {"usd": 1.0}
    segment: AccountField = AccountField(field="metadata.segment", default="unknown")
    industry: AccountField = AccountField(field="metadata.industry", default="unknown")
    region: AccountField = AccountField(field="address.country", default="unknown")
    #: default: the price's nickname, else its product's name or id
    plan: AccountField = AccountField()
    #: default: the subscription item's quantity
    seats: AccountField = AccountField()
    csm_owner: AccountField = AccountField(field="metadata.csm_owner")
    exec_sponsor: AccountField = AccountField(default=False)
    #: a subscription that ends and another that starts within this many days is a plan change
    switch_gap_days: float = 1.0

    @field_validator("account_id")
    @classmethod
    def _customer_field(cls, value: str) -> str:
        if not value.startswith("customer.") or value.endswith("."):
            raise ValueError("expected customer.id, customer.email or customer.metadata.<key>")
        return value

    @field_validator("fx_to_usd")
    @classmethod
    def _rates(cls, value: dict[str, float]) -> dict[str, float]:
        if any(rate <= 0 for rate in value.values()):
            raise ValueError("every rate must be a positive number of USD per unit")
        return {"usd": 1.0, **{k.lower(): float(v) for k, v in value.items()}}


@dataclass(frozen=True)
class StripeExport:
    """The raw exports, flattened (one row per record, `_file` naming its file)."""

    customers: pd.DataFrame
    subscriptions: pd.DataFrame
    invoices: pd.DataFrame
    disputes: pd.DataFrame
    charges: pd.DataFrame


def read_stripe(source: StripeSource, base_dir: Path) -> dict[str, pd.DataFrame]:
    """Read the Stripe exports named by `source` (paths relative to base_dir) and map them."""
    export = StripeExport(
        *(
            read_option(source, name, base_dir, required=name == "subscriptions")
            for name in ("customers", "subscriptions", "invoices", "disputes", "charges")
        )
    )
    return map_stripe(export, source)


def map_stripe(export: StripeExport, source: StripeSource) -> dict[str, pd.DataFrame]:
    """The contract tables from the flattened exports (pure: frames in, frames out)."""
    customers = latest(export.customers, "id").reset_index(drop=True)
    account_of = account_key(source.account_id, "customer", customers, "stripe.account_id")
    subs = subscriptions(export.subscriptions, source, account_of)
    invoices = latest(export.invoices, "id").reset_index(drop=True)
    periods = period_arr(invoices, source)
    changes = arr_changes(arr_points(subs, periods), source.switch_gap_days)
    accounts = map_accounts(changes, subs, periods, customers, source)
    starts = accounts.set_index("account_id")["contract_start"]
    events = pd.concat(
        [
            arr_events(changes),
            payment_failures(invoices, account_of),
            disputes(export.disputes, invoices, latest(export.charges, "id"), account_of),
        ],
        ignore_index=True,
    )
    # an event must fall inside a contract: a one-off invoice before the first subscription is not one
    known = (
        events["account_id"].isin(starts.index).to_numpy()
        & (events["at"] >= events["account_id"].map(starts)).to_numpy()
    )
    warn_dropped(
        "stripe account events",
        int((~known).sum()),
        "not of a paying account, or before its contract started",
        events["account_id"][~known],
    )
    return {
        "accounts": accounts,
        "churn": churn(changes),
        "account_events": events[known].sort_values(["account_id", "at", "kind"], kind="stable").reset_index(drop=True),
    }


def _accounts_for(customer: pd.Series, account_of: pd.Series | None, what: str) -> pd.Series:
    """The account of each customer; a customer without one (deleted, or the field blank) is left
    out with a warning rather than stopping the run."""
    account = accounts_of(customer, account_of)
    lost = customer.notna() & account.isna()
    warn_dropped(
        what,
        int(lost.sum()),
        "customer without an account id (deleted, or the field is blank)",
        customer[lost].unique(),
    )
    return account


def _usd(frame: pd.DataFrame, amount: pd.Series, currency: pd.Series, source: StripeSource, noun: str) -> pd.Series:
    """An amount in the currency's smallest unit -> USD."""
    currency = currency.astype("str").str.lower()
    frame = frame.assign(currency=currency)
    fail(frame, currency.isna(), "currency", noun, "is missing")
    fail(
        frame,
        currency.map(source.fx_to_usd).isna(),
        "currency",
        noun,
        "has no rate in stripe.fx_to_usd; add its USD value per unit, e.g. fx_to_usd: {eur: 1.08}",
    )
    rate = currency.map(source.fx_to_usd)
    unit = np.where(currency.isin(ZERO_DECIMAL), 1.0, 100.0)
    return amount / unit * rate


def subscriptions(raw: pd.DataFrame, source: StripeSource, account_of: pd.Series | None) -> pd.DataFrame:
    """One row per subscription that was ever paid: account, paid start, end, ARR of its current
    items (USD), months per billing period, plan, seats, billing cycle anchor."""
    s = raw.assign(
        _final=column(raw, "ended_at").notna().astype(int) * 2 + column(raw, "canceled_at").notna().astype(int)
    )
    s = latest(s, "id", "_final").reset_index(drop=True)  # of two copies of a subscription, the one that knows its end
    s = s[~column(s, "status").isin(NEVER_PAID).to_numpy()].reset_index(drop=True)
    customer = expandable(s, "customer")
    fail(s, customer.isna(), "customer", "subscription", "is missing")
    items = subscription_items(s, source)
    start = timestamps(s, "start_date", "subscription", required=False).fillna(
        timestamps(s, "created", "subscription", required=False)
    )
    fail(s, start.isna(), "start_date", "subscription", "is missing (and so is created)")
    paid = timestamps(s, "trial_end", "subscription", required=False).fillna(start)
    # current_period_end moved from the subscription to its items in API version 2025-03-31
    period_end = timestamps(s, "current_period_end", "subscription", required=False).fillna(items["period_end"])
    canceled = column(s, "status").eq("canceled")
    end = timestamps(s, "ended_at", "subscription", required=False)
    end = end.fillna(timestamps(s, "cancel_at", "subscription", required=False).fillna(period_end).where(canceled))
    out = pd.DataFrame(
        {
            "subscription_id": as_id(s["id"]),
            "account_id": _accounts_for(customer, account_of, "stripe subscriptions"),
            "customer_id": customer,
            "paid_start": paid,
            "end": end,
            "arr": items["arr"],
            "months": items["months"],
            "plan": items["plan"],
            "seats": items["quantity"],
            "anchor": timestamps(s, "billing_cycle_anchor", "subscription", required=False),
            "price.recurring": items["every"],
            FILE: s[FILE],
        }
    )
    trial_only = out["end"].notna() & (out["end"] <= out["paid_start"])  # canceled before the trial ended: never paid
    warn_dropped(
        "stripe subscriptions", int(trial_only.sum()), "ended during the trial", out["subscription_id"][trial_only]
    )
    return out[~trial_only.to_numpy() & out["account_id"].notna().to_numpy()].reset_index(drop=True)


def subscription_items(s: pd.DataFrame, source: StripeSource) -> pd.DataFrame:
    """Per subscription (row of `s`): ARR of its items (USD), and of its largest item the months per
    period, plan (nickname, else product) and quantity; the latest item period end."""
    items = explode(
        s.assign(_row=np.arange(len(s))),
        "items.data",
        {"_row": "_row", "id": "subscription_id", "currency": "sub_currency"},
    )
    fail(s, ~pd.Series(np.arange(len(s))).isin(column(items, "_row")), "items.data", "subscription", "has no items")
    items = items.assign(id=items["subscription_id"])  # errors about an item name its subscription
    # older API versions describe the price as a `plan` (amount, interval, ...)
    price = {
        f: column(items, f"price.{f}").fillna(column(items, f"plan.{p}"))
        for f, p in (
            ("unit_amount", "amount"),
            ("currency", "currency"),
            ("nickname", "nickname"),
            ("recurring.interval", "interval"),
            ("recurring.interval_count", "interval_count"),
            ("recurring.usage_type", "usage_type"),
        )
    }
    items = items.assign(
        **{
            "price.unit_amount": price["unit_amount"].fillna(column(items, "price.unit_amount_decimal")),
            "price.recurring.interval": price["recurring.interval"],
        }
    )
    unit = numbers(items, "price.unit_amount", "subscription")
    interval = price["recurring.interval"]
    count = pd.to_numeric(price["recurring.interval_count"], errors="coerce").fillna(1)
    fail(
        items,
        ~interval.isin(list(INTERVAL_MONTHS)),
        "price.recurring.interval",
        "subscription",
        f"is not a recurring interval ({', '.join(INTERVAL_MONTHS)})",
    )
    months = interval.map(INTERVAL_MONTHS) * count
    quantity = pd.to_numeric(column(items, "quantity"), errors="coerce").fillna(1)
    metered = price["recurring.usage_type"].eq("metered") | unit.isna()
    warn_dropped(
        "stripe subscription items",
        int(metered.sum()),
        "metered or tiered prices count as 0 ARR",
        items["subscription_id"][metered],
    )
    usd = _usd(
        items, unit.fillna(0) * quantity, price["currency"].fillna(items["sub_currency"]), source, "subscription"
    )
    items = items.assign(
        arr=(usd * 12 / months).where(~metered, 0.0),
        months=months,
        quantity=quantity,
        plan=price["nickname"].fillna(column(items, "price.product.name")).fillna(expandable(items, "price.product")),
        period_end=timestamps(items, "current_period_end", "subscription", required=False),
        every="every " + count.astype(int).astype(str) + " " + interval.astype("str"),
    )
    rows = pd.RangeIndex(len(s))
    main = items.sort_values("arr", kind="stable").drop_duplicates("_row", keep="last").set_index("_row").reindex(rows)
    grouped = items.groupby("_row")
    return pd.DataFrame(
        {
            "arr": grouped["arr"].sum().reindex(rows),
            "months": main["months"],
            "plan": main["plan"],
            "quantity": main["quantity"],
            "every": main["every"],
            "period_end": grouped["period_end"].max().reindex(rows),
        }
    )


def period_arr(invoices: pd.DataFrame, source: StripeSource) -> pd.DataFrame:
    """ARR billed per subscription period: subscription_id, at (period start), arr (USD), from the
    full-period subscription lines of creation and renewal invoices (prorations left out)."""
    billed = invoices[
        column(invoices, "billing_reason").isin(CYCLE_REASONS).to_numpy()
        & column(invoices, "status").isin(BILLED).to_numpy()
    ]
    subscription = expandable(billed, "subscription").fillna(column(billed, "parent.subscription_details.subscription"))
    lines = explode(
        billed.assign(_sub=subscription),
        "lines.data",
        {"id": "id", "_sub": "subscription_id", "currency": "inv_currency"},
    )
    if lines.empty:
        return pd.DataFrame(
            {
                "subscription_id": pd.Series(dtype="str"),
                "at": pd.Series(dtype="datetime64[us, UTC]"),
                "arr": pd.Series(dtype="float64"),
                "seats": pd.Series(dtype="float64"),
            }
        )
    proration = flag(column(lines, "proration")) | flag(column(lines, "parent.subscription_item_details.proration"))
    kept = (
        column(lines, "type").eq("subscription") | column(lines, "parent.type").eq("subscription_item_details")
    ).to_numpy() & ~proration
    lines = lines[kept].reset_index(drop=True)
    start = timestamps(lines, "period.start", "invoice")
    days = (timestamps(lines, "period.end", "invoice") - start).dt.total_seconds() / 86400
    months = (days / MONTH_DAYS).round().clip(lower=1)
    amount = numbers(lines, "amount", "invoice", required=True)
    usd = _usd(lines, amount, column(lines, "currency").fillna(lines["inv_currency"]), source, "invoice")
    out = pd.DataFrame(
        {
            "invoice_id": lines["id"],
            "subscription_id": as_id(lines["subscription_id"]),
            "at": start,
            "arr": usd * 12 / months,
            "seats": pd.to_numeric(column(lines, "quantity"), errors="coerce"),
        }
    )
    # seats: the quantity of the invoice's largest line (the plan, not an add-on)
    seats = (
        out.sort_values("arr", kind="stable")
        .drop_duplicates("invoice_id", keep="last")
        .set_index("invoice_id")["seats"]
    )
    out = out.groupby(["invoice_id", "subscription_id"], as_index=False).agg(at=("at", "min"), arr=("arr", "sum"))
    return out.assign(seats=out["invoice_id"].map(seats))[["subscription_id", "at", "arr", "seats"]]


def map_accounts(
    changes: pd.DataFrame, subs: pd.DataFrame, periods: pd.DataFrame, customers: pd.DataFrame, source: StripeSource
) -> pd.DataFrame:
    """One row per account that ever paid, with what was true at its first paid start."""
    first_start = contract_starts(changes)
    first_sub = subs.sort_values(["paid_start", "arr"], ascending=[True, False], kind="stable").drop_duplicates(
        "account_id"
    )
    a = first_start.merge(first_sub, on="account_id", how="left")
    # seats at contract: the first invoiced period's quantity (the items hold today's)
    billed = periods.merge(a[["subscription_id", "paid_start"]], on="subscription_id")
    billed = (
        billed[billed["at"] >= billed["paid_start"]].sort_values("at", kind="stable").drop_duplicates("subscription_id")
    )
    seats = a["subscription_id"].map(billed.set_index("subscription_id")["seats"]).fillna(a["seats"])
    whole = a["months"].round()
    term = whole.map(TERMS).where((a["months"] - whole).abs() < 1e-9)
    terms = ", ".join(f"{name} ({months})" for months, name in TERMS.items())
    fail(
        a.assign(id=a["subscription_id"]),
        term.isna(),
        "price.recurring",
        "subscription",
        f"is not a contract term; expected one of (months per period): {terms}",
    )
    start = a["at"]
    renewal = a["anchor"].where(a["anchor"] > start)
    for months in whole.dropna().unique():  # one DateOffset per distinct term: a handful at most
        due = renewal.isna() & (whole == months)
        renewal = renewal.where(~due, start[due] + pd.DateOffset(months=int(months)))
    c = customers.assign(_id=as_id(customers["id"])).set_index("_id") if not customers.empty else pd.DataFrame()
    customer = a["customer_id"]
    name = _customer_value(c, customer, "name").fillna(_customer_value(c, customer, "email")).fillna(customer)
    return pd.DataFrame(
        {
            "account_id": a["account_id"].astype("str"),
            "name": name.astype("str"),
            "segment": _option(source.segment, c, customer).astype("str"),
            "industry": _option(source.industry, c, customer).astype("str"),
            "region": _option(source.region, c, customer).astype("str"),
            "plan": _option(source.plan, c, customer, a["plan"]).astype("str"),
            "seats": pd.to_numeric(_option(source.seats, c, customer, seats), errors="coerce")
            .clip(lower=1)
            .round()
            .astype("Int64"),
            "arr": a["arr_after"].round(2),
            "contract_start": start,
            "billing": term.astype("str"),
            "csm_owner": _option(source.csm_owner, c, customer).astype("str"),
            "exec_sponsor": _option(source.exec_sponsor, c, customer)
            .astype("str")
            .str.lower()
            .isin(["true", "1", "yes"])
            .to_numpy(),
            "renewal_date": renewal.astype(start.dtype),
        }
    )


def _customer_value(customers: pd.DataFrame, customer: pd.Series, field: str) -> pd.Series:
    if field not in customers.columns:
        return pd.Series(np.nan, index=customer.index, dtype="object")
    return customer.map(customers[field])


def _option(
    options: AccountField, customers: pd.DataFrame, customer: pd.Series, derived: pd.Series | None = None
) -> pd.Series:
    """A customer field if set, else what Stripe's prices tell (plan, seats), else the default."""
    value = (
        _customer_value(customers, customer, options.field)
        if options.field
        else pd.Series(np.nan, index=customer.index, dtype="object")
    )
    if derived is not None:
        value = value.fillna(derived)
    return value.astype("object").fillna(options.default) if options.default is not None else value


def payment_failures(invoices: pd.DataFrame, account_of: pd.Series | None) -> pd.DataFrame:
    """payment_failed per invoice whose automatic payment failed at least once, dated at the first
    attempt (the invoice's finalisation), since the export keeps no time per attempt."""
    status = column(invoices, "status")
    attempts = pd.to_numeric(column(invoices, "attempt_count"), errors="coerce").fillna(0)
    failed = (
        flag(column(invoices, "attempted"))
        & ((attempts > 1) | (~status.isin(["paid", "draft"]) & (attempts >= 1))).to_numpy()
    )
    rows = invoices[failed].reset_index(drop=True)
    at = timestamps(rows, "status_transitions.finalized_at", "invoice", required=False).fillna(
        timestamps(rows, "created", "invoice")
    )
    customer = expandable(rows, "customer")
    return event_frame("account_id", _accounts_for(customer, account_of, "stripe invoices"), at, "payment_failed")


def disputes(
    raw: pd.DataFrame, invoices: pd.DataFrame, charges: pd.DataFrame, account_of: pd.Series | None
) -> pd.DataFrame:
    """billing_dispute at each dispute's creation. A dispute names a charge, not a customer: the
    customer comes from the expanded charge, the charges export, or the invoice that was charged."""
    d = latest(raw, "id").reset_index(drop=True)
    lookup = _charge_customers(charges, invoices)
    customer = as_id(column(d, "charge.customer")).fillna(expandable(d, "charge").map(lookup))
    customer = customer.fillna(expandable(d, "payment_intent").map(lookup))
    found = customer.notna().to_numpy()
    warn_dropped(
        "stripe disputes",
        int((~found).sum()),
        "charge not found in charges or invoices: export charges",
        d["id"][~found],
    )
    rows = d[found].reset_index(drop=True)
    account = _accounts_for(customer[found].reset_index(drop=True), account_of, "stripe disputes")
    return event_frame("account_id", account, timestamps(rows, "created", "dispute"), "billing_dispute")


def _charge_customers(charges: pd.DataFrame, invoices: pd.DataFrame) -> pd.Series:
    """charge or payment intent id -> customer id, from the charges and invoices exports."""
    refs = [
        pd.DataFrame({"ref": expandable(frame, key), "customer": expandable(frame, "customer")})
        for frame, keys in ((charges, ("id", "payment_intent")), (invoices, ("charge", "payment_intent")))
        if not frame.empty
        for key in keys
    ]
    if not refs:
        return pd.Series(dtype="str")
    return pd.concat(refs).dropna().drop_duplicates("ref").set_index("ref")["customer"]
