"""Customer bases shaped unlike the default simulated one, written as a user's export would be.

Each builder writes a data folder and returns how `churn features` should cut it. Some start from
the simulator with other settings and reshape its tables (drop the support data, change the
contract terms, store dates as text); one is written from scratch, so its distributions owe
nothing to the simulator. Every one must pass `churn validate` as it is.
"""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from simulation.config import SimulationConfig
from simulation.simulate import simulate

SUPPORT = ("tickets", "ticket_events", "ticket_messages", "surveys", "account_events")


@dataclass(frozen=True)
class Shape:
    """A base and the flags its features are built with."""

    name: str
    data: Path
    every: str = "30d"
    start: str | None = None
    text: bool = False
    expect_without_data: tuple[str, ...] = ()
    #: features made from the base's own usage measures, which must be built and explained
    expect_features: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)

    def features_args(self, out: Path) -> list[str]:
        args = ["features", "--data", str(self.data), "--out", str(out), "--every", self.every]
        args += ["--start", self.start] if self.start else []
        return args + ([] if self.text else ["--no-text"])


def _simulated(root: Path, accounts: int, days: int, seed: int) -> Path:
    out = root / "data"
    simulate(SimulationConfig(accounts=accounts, days=days, seed=seed), out)
    shutil.rmtree(out / "truth")  # a user's export has no ground truth: no oracle rows
    return out


def _to_csv(folder: Path, name: str) -> None:
    """The table as CSV with every value as text (dates as ISO strings), the Parquet file removed."""
    path = folder / f"{name}.parquet"
    frame = pd.read_parquet(path)
    path.unlink()
    frame.astype("str").replace({"NaT": "", "nan": "", "<NA>": ""}).to_csv(folder / f"{name}.csv", index=False)


def usage_only(root: Path) -> Shape:
    """No support data at all (no tickets, messages, surveys or account events), three of the six
    usage measures plus one of the company's own, and the churn table with dates stored as text."""
    data = _simulated(root, accounts=300, days=300, seed=11)
    for name in SUPPORT:
        (data / f"{name}.parquet").unlink()
    usage = pd.read_parquet(data / "usage_daily.parquet")
    usage = usage[["account_id", "date", "active_users", "logins", "key_feature_events"]].assign(
        reports_exported=(usage["key_feature_events"] // 7).astype("int64")
    )
    usage.to_parquet(data / "usage_daily.parquet", index=False)
    churn = pd.read_parquet(data / "churn.parquet")
    churn.assign(churned_at=churn["churned_at"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_parquet(
        data / "churn.parquet", index=False
    )
    return Shape(
        "usage_only",
        data,
        every="14d",
        expect_features=("usage_reports_exported_30d", "usage_reports_exported_change_30d"),
        expect_without_data=("support", "effort", "communication", "surveys", "risk_events", "text", "experience"),
    )


def weekly_six_months(root: Path) -> Shape:
    """Six months of history with every table, cut every week, text signals on."""
    data = _simulated(root, accounts=200, days=185, seed=12)
    return Shape("weekly_six_months", data, every="7d", start="2024-02-01", text=True)


def terms_with_renewals(root: Path) -> Shape:
    """Quarterly, semiannual, two- and three-year terms (as names and as months) with explicit
    contract end dates, free-text segments, all tables as CSV."""
    data = _simulated(root, accounts=300, days=420, seed=13)
    accounts = pd.read_parquet(data / "accounts.parquet")
    rng = np.random.default_rng(13)
    terms = rng.choice(np.array(["quarterly", "6", "annual", "24", "biennial", "36", "monthly"]), len(accounts))
    months = (
        pd.Series(terms)
        .map({"quarterly": 3, "6": 6, "annual": 12, "24": 24, "biennial": 24, "36": 36, "monthly": 1})
        .to_numpy()
    )
    # the end of the first term, as a CRM holds it; blank for some accounts (renewals then fall on anniversaries)
    end = [start + pd.DateOffset(months=int(m)) for start, m in zip(accounts["contract_start"], months, strict=True)]
    accounts = accounts.assign(
        billing=terms,
        contract_end=pd.Series(end).where(rng.random(len(accounts)) < 0.8).to_numpy(),
        segment=accounts["segment"].map(
            {"smb": "Small business", "mid_market": "Mid-Market", "enterprise": "Strategic"}
        ),
    )
    accounts.to_parquet(data / "accounts.parquet", index=False)
    for path in data.glob("*.parquet"):
        _to_csv(data, path.stem)
    return Shape("terms_with_renewals", data, every="30d")


def consumer_monthly(root: Path, accounts: int = 600, days: int = 240, seed: int = 14) -> Shape:
    """A consumer-like subscription business written from scratch: one-user accounts on monthly
    plans, a few with two users, usage that fades before a cancellation, dates as text in CSV.

    Churn falls on a monthly renewal; an account's engagement drifts as a random walk, and the
    chance to cancel at a renewal rises as it falls, so usage carries a real signal."""
    rng = np.random.default_rng(seed)
    first = pd.Timestamp("2023-03-01", tz="UTC")
    start_day = np.where(rng.random(accounts) < 0.6, 0, rng.integers(0, days - 60, accounts))
    starts = first + pd.to_timedelta(start_day, unit="D")
    engagement = np.zeros((accounts, days))
    engagement[:, 0] = rng.normal(0.6, 0.8, accounts)
    steps = rng.normal(-0.004, 0.09, (accounts, days))
    engagement = engagement[:, :1] + np.cumsum(steps, axis=1)
    churn_day = np.full(accounts, -1)
    for day in range(1, days):
        renewal = (day > start_day) & ((day - start_day) % 30 == 0) & (churn_day < 0)
        p = 1 / (1 + np.exp(2.2 + 1.6 * engagement[:, day]))
        cancel = renewal & (rng.random(accounts) < p)
        churn_day[cancel] = day
    ids = np.array([f"C{i:05d}" for i in range(accounts)])
    seats = np.where(rng.random(accounts) < 0.85, 1, 2)
    plan = np.where(seats == 1, "personal", "duo")
    accounts_frame = pd.DataFrame(
        {
            "account_id": ids,
            "name": [f"Subscriber {i}" for i in range(accounts)],
            "segment": "consumer",
            "industry": "consumer",
            "region": rng.choice(["us", "eu", "apac"], accounts),
            "plan": plan,
            "seats": seats,
            "arr": np.where(seats == 1, 9.99, 14.99) * 12,
            "contract_start": starts.strftime("%Y-%m-%d"),
            "billing": "monthly",
            "csm_owner": "",
            "exec_sponsor": "no",
        }
    )
    acc, day = np.nonzero(np.ones((accounts, days), dtype=bool))
    alive = (day >= start_day[acc]) & ((churn_day[acc] < 0) | (day < churn_day[acc]))
    acc, day = acc[alive], day[alive]
    rate = 1 / (1 + np.exp(-engagement[acc, day]))
    users = np.minimum(rng.binomial(seats[acc], rate), seats[acc])
    logins = users * rng.integers(1, 3, len(acc))
    minutes = np.round(logins * rng.gamma(2.0, 9.0, len(acc)), 1)
    usage = pd.DataFrame(
        {
            "account_id": ids[acc],
            "date": (first + pd.to_timedelta(day, unit="D")).strftime("%Y-%m-%d"),
            "active_users": users,
            "logins": logins,
            "session_minutes": minutes,
            "tracks_played": logins * rng.integers(0, 12, len(acc)),
        }
    )
    gone = churn_day >= 0
    churn = pd.DataFrame(
        {
            "account_id": ids[gone],
            "churned_at": (first + pd.to_timedelta(churn_day[gone], unit="D")).strftime("%Y-%m-%dT%H:%M:%S+00:00"),
        }
    )
    data = root / "data"
    data.mkdir(parents=True)
    for name, frame in (("accounts", accounts_frame), ("usage_daily", usage), ("churn", churn)):
        frame.to_csv(data / f"{name}.csv", index=False)
    return Shape(
        "consumer_monthly",
        data,
        every="7d",
        start="2023-06-01",
        expect_features=("usage_tracks_played_30d",),
        expect_without_data=("support", "effort", "communication", "surveys", "risk_events", "text", "experience"),
    )


#: the product's key features, as its analytics events name them
KEY_FEATURES = (
    "Report Created",
    "Dashboard Shared",
    "Export Run",
    "Alert Configured",
    "Workflow Built",
    "Integration Connected",
    "Comment Added",
    "Filter Saved",
)
#: the simulator's most distinct features a day (distinct_features_used)
_SIMULATED_FEATURES = 25
#: how the exports below map to the contract (paths relative to the mapping file)
INGEST_MAPPING = f"""
tables:
  accounts:
    source: crm/salesforce_accounts.csv
    columns: {{account_id: Account.Id, name: Account.Name, segment: Type, industry: Industry, region: BillingRegion__c,
              plan: Plan__c, seats: Seats__c, arr: AnnualRevenue, contract_start: CreatedDate, billing: Billing_Term__c,
              csm_owner: Owner.Name, exec_sponsor: Exec_Sponsor__c}}
    values:
      segment: {{Customer - SMB: smb, Customer - Mid-Market: mid_market, Customer - Enterprise: enterprise}}
      billing: {{Annual: annual, Monthly: monthly}}
      exec_sponsor: {{Yes: true, No: false}}
    unit: cents
  churn:
    source: {{url: "sqlite:///crm/crm.db", query: "SELECT AccountId, CloseDate FROM Opportunity WHERE StageName = 'Closed Lost'"}}
    columns: {{account_id: AccountId, churned_at: CloseDate}}
  account_events: {{source: crm/account_history.csv, columns: {{account_id: Account, at: Date, kind: Type, value: Amount}}}}
  tickets:
    source: helpdesk/tickets.csv
    columns: {{ticket_id: Id, account_id: Organization, created_at: Created, priority: Priority, category: Category, channel: Via}}
  ticket_events: {{source: helpdesk/ticket_events.csv, columns: {{ticket_id: Ticket, at: When, kind: Kind, value: Value}}}}
  ticket_messages:
    source: helpdesk/comments.csv
    columns: {{message_id: Id, ticket_id: Ticket, sent_at: Created, author: Author, body: Body}}
  surveys:
    source: surveys.csv
    columns: {{account_id: Account, answered_at: Submitted, score: Score, comment: Comment}}
    constants: {{kind: nps}}
events:
  source: analytics/tracks.parquet
  columns: {{timestamp: timestamp, account_id: context_group_id, user_id: user_id, event: event, event_id: message_id,
            duration: session_seconds}}
  logins: [Signed In]
  key_features: {json.dumps(list(KEY_FEATURES))}
  api: [API Request]
"""


def ingested(root: Path) -> Shape:
    """A simulated base written out as a company's own exports and read back by `churn ingest`.

    Salesforce accounts (its column names and labels, ARR in cents, dates with an offset), churn
    from the CRM's database through SQL (closed-lost renewals, and lost deals of prospects),
    Segment track events made from the daily usage (see `_write_tracks`), the help desk, surveys
    and account history as CSV files with their own column names; plus rows no contract covers
    (tickets and events of trials, a prospect's survey, a test workspace) that the ingest drops.
    """
    from ingest.run import SUMMARY_FILE
    from pipelines.cli import main

    simulated = root / "simulated"
    simulate(SimulationConfig(accounts=250, days=300, seed=16), simulated)
    t = {
        name: pd.read_parquet(simulated / f"{name}.parquet") for name in ("accounts", "usage_daily", "churn", *SUPPORT)
    }
    rng = np.random.default_rng(16)
    exports = root / "exports"
    for folder in ("crm", "helpdesk", "analytics"):
        (exports / folder).mkdir(parents=True)
    # a copy scaled down per account (users, seats, events alike) keeps the stream to a few hundred thousand events
    scale = (t["usage_daily"].groupby("account_id")["active_users"].mean() / 2).clip(lower=1)
    trials = t["accounts"][
        t["accounts"]["contract_start"] >= t["usage_daily"]["date"].min() + pd.Timedelta(days=14)
    ].head(4)
    _write_crm(exports / "crm", t["accounts"], t["churn"], t["account_events"], scale)
    _write_support(exports, t, trials)
    events = _write_tracks(exports / "analytics" / "tracks.parquet", t["usage_daily"], scale, trials, rng)
    (exports / "mapping.yaml").write_text(INGEST_MAPPING)
    data = root / "data"
    assert main(["ingest", "--mapping", str(exports / "mapping.yaml"), "--out", str(data), "--json"]) == 0
    summary = json.loads((data / SUMMARY_FILE).read_text())
    rows_in = {s.get("table", s["section"].removeprefix("tables.")): s["rows_in"] for s in summary["sources"]}
    # the test reads stdout through capsys: the record goes to the terminal's stdout (shown with -s)
    say = functools.partial(print, file=sys.__stdout__, flush=True)
    say(
        f"[ingested] simulated: {', '.join(f'{n}={len(f):,}' for n, f in t.items())}; {events:,} events written for "
        f"{len(t['usage_daily']):,} account-days"
    )
    say(f"[ingested] rows in: {', '.join(f'{n}={c:,}' for n, c in rows_in.items())}")
    say(
        f"[ingested] rows out: {', '.join(f'{n}={c:,}' for n, c in summary['tables'].items())} in {summary['seconds']:.1f}s"
    )
    say(f"[ingested] dropped outside a contract: {json.dumps(summary['outside_contract'])}")
    for note in summary["notes"]:
        say(f"[ingested] note: {note}")
    return Shape("ingested", data, every="30d")


def _write_crm(
    folder: Path, accounts: pd.DataFrame, churn: pd.DataFrame, history: pd.DataFrame, scale: pd.Series
) -> None:
    """Salesforce's account export, its Opportunity table in a sqlite file, and account history."""
    labels = {"smb": "Customer - SMB", "mid_market": "Customer - Mid-Market", "enterprise": "Customer - Enterprise"}
    pd.DataFrame(
        {
            "Account.Id": accounts["account_id"],
            "Account.Name": accounts["name"],
            "Type": accounts["segment"].map(labels),
            "Industry": accounts["industry"],
            "BillingRegion__c": accounts["region"],
            "Plan__c": accounts["plan"],
            "Seats__c": np.ceil(accounts["seats"] / accounts["account_id"].map(scale)).astype("int64"),
            "AnnualRevenue": (accounts["arr"] * 100).round().astype("int64"),
            "CreatedDate": accounts["contract_start"]
            .dt.tz_convert("America/Los_Angeles")
            .dt.strftime("%Y-%m-%dT%H:%M:%S.000%z"),
            "Billing_Term__c": accounts["billing"].str.capitalize(),
            "Owner.Name": accounts["csm_owner"],
            "Exec_Sponsor__c": np.where(accounts["exec_sponsor"], "Yes", "No"),
        }
    ).to_csv(folder / "salesforce_accounts.csv", index=False)
    live = accounts[~accounts["account_id"].isin(churn["account_id"])].head(20)
    opportunities = pd.concat(
        [
            pd.DataFrame(
                {
                    "AccountId": churn["account_id"],
                    "StageName": "Closed Lost",
                    "Type": "Renewal",
                    "CloseDate": churn["churned_at"],
                }
            ),
            pd.DataFrame(
                {
                    "AccountId": live["account_id"],
                    "StageName": "Closed Won",
                    "Type": "Renewal",
                    "CloseDate": live["contract_start"] + pd.DateOffset(years=1),
                }
            ),
            # deals lost before these companies ever became customers: not in the accounts export
            pd.DataFrame(
                {
                    "AccountId": ["PROSPECT-1", "PROSPECT-2"],
                    "StageName": "Closed Lost",
                    "Type": "New Business",
                    "CloseDate": pd.to_datetime(["2024-03-01", "2024-05-01"], utc=True),
                }
            ),
        ]
    )
    # UTC, as text
    opportunities = opportunities.assign(CloseDate=opportunities["CloseDate"].dt.strftime("%Y-%m-%d %H:%M:%S"))
    with contextlib.closing(sqlite3.connect(folder / "crm.db")) as connection:
        opportunities.to_sql("Opportunity", connection, index=False)
        connection.commit()
    history.rename(columns={"account_id": "Account", "at": "Date", "kind": "Type", "value": "Amount"}).to_csv(
        folder / "account_history.csv", index=False
    )


def _write_support(exports: Path, t: dict[str, pd.DataFrame], trials: pd.DataFrame) -> None:
    """The help desk's tickets, ticket events and comments and the survey tool's answers as CSV,
    with a ticket (one reply, one event) opened during each trial, one of a prospect and a
    prospect's survey answer."""
    opened = pd.concat(
        [trials["contract_start"] - pd.Timedelta(days=5), pd.Series([pd.Timestamp("2024-04-02", tz="UTC")])]
    )
    extra = pd.DataFrame(
        {
            "ticket_id": [f"TRIAL-{i}" for i in range(len(opened))],
            "account_id": [*trials["account_id"], "PROSPECT-1"],
            "created_at": opened.to_numpy(),
            "priority": "normal",
            "category": "how_to",
            "channel": "email",
        }
    )
    tickets = pd.concat([t["tickets"], extra], ignore_index=True)
    events = pd.concat(
        [
            t["ticket_events"],
            extra[["ticket_id"]].assign(
                at=extra["created_at"] + pd.Timedelta(hours=2), kind="first_response", value=np.nan
            ),
        ]
    )
    messages = pd.concat(
        [
            t["ticket_messages"],
            extra[["ticket_id"]].assign(
                message_id="M-" + extra["ticket_id"],
                sent_at=extra["created_at"],
                author="customer",
                body="How do I invite my team?",
            ),
        ]
    )
    surveys = pd.concat(
        [
            t["surveys"],
            pd.DataFrame(
                {
                    "account_id": ["PROSPECT-2"],
                    "answered_at": [pd.Timestamp("2024-06-01", tz="UTC")],
                    "kind": "nps",
                    "score": [6],
                    "comment": [""],
                }
            ),
        ]
    )
    tickets.rename(
        columns={
            "ticket_id": "Id",
            "account_id": "Organization",
            "created_at": "Created",
            "priority": "Priority",
            "category": "Category",
            "channel": "Via",
        }
    ).to_csv(exports / "helpdesk" / "tickets.csv", index=False)
    events.rename(columns={"ticket_id": "Ticket", "at": "When", "kind": "Kind", "value": "Value"}).to_csv(
        exports / "helpdesk" / "ticket_events.csv", index=False
    )
    messages.rename(
        columns={"message_id": "Id", "ticket_id": "Ticket", "sent_at": "Created", "author": "Author", "body": "Body"}
    ).to_csv(exports / "helpdesk" / "comments.csv", index=False)
    surveys.drop(columns="kind").rename(
        columns={"account_id": "Account", "answered_at": "Submitted", "score": "Score", "comment": "Comment"}
    ).to_csv(exports / "surveys.csv", index=False)


def _write_tracks(
    path: Path, usage: pd.DataFrame, scale: pd.Series, trials: pd.DataFrame, rng: np.random.Generator
) -> int:
    """Segment track events (one row per event) whose daily aggregate is `usage` scaled down by
    the account's `scale`; returns how many were written.

    Per account-day: `active_users` distinct user ids, `logins` "Signed In" events carrying the
    day's session seconds, `key_feature_events` events named among KEY_FEATURES (as many names as
    distinct_features_used allows, in proportion), `api_calls` / 5 "API Request" events without a
    user (an API key), and "Page Viewed" events so that every active user has one. Timestamps are
    epoch milliseconds or ISO 8601 with an offset; 0.5% of events are re-sent with the same
    message id; trial accounts sign in before their contract and a test workspace is active.
    """
    k = usage["account_id"].map(scale).to_numpy()

    def down(column: str, by: float = 1.0) -> np.ndarray:  # stochastic rounding keeps the expected count
        return np.floor(usage[column].to_numpy(dtype="float64") / (k * by) + rng.random(len(usage))).astype("int64")

    users, logins, features, api = (
        down("active_users"),
        down("logins"),
        down("key_feature_events"),
        down("api_calls", 5),
    )
    names = np.ceil(usage["distinct_features_used"].to_numpy() * len(KEY_FEATURES) / _SIMULATED_FEATURES).astype(
        "int64"
    )
    names = np.minimum(names, features)
    pages = np.maximum(users - logins - features, 0)
    ends = np.cumsum(np.stack([logins, features, pages, api], axis=1), axis=1)  # per day: where each kind of event ends
    count = ends[:, -1]
    day = np.repeat(np.arange(len(usage)), count)
    j = np.arange(len(day)) - np.repeat(ends[:, -1].cumsum() - count, count)  # the event's number within its day
    kind = (j >= ends[day, 0]).astype("int64") + (j >= ends[day, 1]) + (j >= ends[day, 2])
    first_feature = rng.integers(0, len(KEY_FEATURES), len(usage))
    feature = (first_feature[day] + (j - ends[day, 0]) % np.maximum(names[day], 1)) % len(KEY_FEATURES)
    event = np.select(
        [kind == 0, kind == 1, kind == 2],
        ["Signed In", np.asarray(KEY_FEATURES)[feature], "Page Viewed"],
        "API Request",
    )
    account = usage["account_id"].to_numpy()[day]
    user = pd.Series(account).str.cat(pd.Series(j % np.maximum(users[day], 1)).astype("str"), sep="-u")
    seconds = usage["session_minutes"].to_numpy() * 60 / k / np.maximum(logins, 1)
    ms = _epoch_ms(usage["date"])[day] + rng.integers(0, 86_400_000, len(day))
    with_user = (kind < 3) & (users[day] > 0)  # a day without an active user has only anonymous events
    tracks = pd.DataFrame(
        {
            "ms": ms,
            "context_group_id": account,
            "user_id": user.where(with_user, None).to_numpy(),
            "event": event,
            "session_seconds": np.where(kind == 0, seconds[day], np.nan),
        }
    )
    starts = _epoch_ms(trials["contract_start"])
    outside = pd.DataFrame(
        {  # three trial days per trial account, and a test workspace no contract covers
            "ms": np.concatenate([np.repeat(starts, 3) - np.tile([3, 2, 1], len(starts)) * 86_400_000, ms[:40]]),
            "context_group_id": [*np.repeat(trials["account_id"].to_numpy(), 3), *["TEST-WORKSPACE"] * 40],
            "user_id": "trial-user",
            "event": "Signed In",
            "session_seconds": 600.0,
        }
    )
    tracks = pd.concat([tracks, outside], ignore_index=True)
    tracks["message_id"] = "msg-" + pd.Series(np.arange(len(tracks))).astype("str")
    resent = rng.random(len(tracks)) < 0.005
    tracks = pd.concat([tracks, tracks[resent]], ignore_index=True).sort_values("ms", kind="stable", ignore_index=True)
    tracks.insert(0, "timestamp", _segment_times(tracks.pop("ms").to_numpy(), rng))
    tracks.to_parquet(path, index=False)
    return len(tracks)


def _epoch_ms(times: pd.Series) -> np.ndarray:
    """Milliseconds since the epoch, UTC (numpy's datetime64 has no time zone)."""
    return pd.to_datetime(times, utc=True).dt.tz_convert(None).to_numpy().astype("datetime64[ms]").astype("int64")


def _segment_times(ms: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Epoch milliseconds as text for a quarter of the events, ISO 8601 in a local time with its
    offset for the rest (the sources of one stream write them differently)."""
    out = ms.astype("str").astype(object)
    offsets = {"-05:00": -5 * 3_600_000, "+01:00": 3_600_000, "+05:30": 19_800_000}
    which = rng.integers(0, len(offsets) + 1, len(ms))  # the last choice keeps epoch milliseconds
    for i, (offset, shift) in enumerate(offsets.items()):
        rows = which == i
        out[rows] = np.char.add(np.datetime_as_string((ms[rows] + shift).astype("datetime64[ms]"), unit="ms"), offset)
    return out


SHAPES: dict[str, Callable[[Path], Shape]] = {
    "usage_only": usage_only,
    "weekly_six_months": weekly_six_months,
    "terms_with_renewals": terms_with_renewals,
    "consumer_monthly": consumer_monthly,
    "ingested": ingested,
}
