"""Customer bases shaped unlike the default simulated one, written as a user's export would be.

Each builder writes a data folder and returns how `churn features` should cut it. Some start from
the simulator with other settings and reshape its tables (drop the support data, change the
contract terms, store dates as text); one is written from scratch, so its distributions owe
nothing to the simulator. Every one must pass `churn validate` as it is.
"""

from __future__ import annotations

import shutil
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
        reports_exported=(usage["key_feature_events"] // 7).astype("int64"))
    usage.to_parquet(data / "usage_daily.parquet", index=False)
    churn = pd.read_parquet(data / "churn.parquet")
    churn.assign(churned_at=churn["churned_at"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_parquet(data / "churn.parquet", index=False)
    return Shape("usage_only", data, every="14d",
                 expect_without_data=("support", "effort", "communication", "surveys", "risk_events", "text", "experience"))


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
    months = pd.Series(terms).map({"quarterly": 3, "6": 6, "annual": 12, "24": 24, "biennial": 24, "36": 36, "monthly": 1}).to_numpy()
    # the end of the first term, as a CRM holds it; blank for some accounts (renewals then fall on anniversaries)
    end = [start + pd.DateOffset(months=int(m)) for start, m in zip(accounts["contract_start"], months, strict=True)]
    accounts = accounts.assign(billing=terms, contract_end=pd.Series(end).where(rng.random(len(accounts)) < 0.8).to_numpy(),
                               segment=accounts["segment"].map({"smb": "Small business", "mid_market": "Mid-Market", "enterprise": "Strategic"}))
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
    accounts_frame = pd.DataFrame({
        "account_id": ids, "name": [f"Subscriber {i}" for i in range(accounts)], "segment": "consumer",
        "industry": "consumer", "region": rng.choice(["us", "eu", "apac"], accounts), "plan": plan, "seats": seats,
        "arr": np.where(seats == 1, 9.99, 14.99) * 12, "contract_start": starts.strftime("%Y-%m-%d"), "billing": "monthly",
        "csm_owner": "", "exec_sponsor": "no",
    })
    acc, day = np.nonzero(np.ones((accounts, days), dtype=bool))
    alive = (day >= start_day[acc]) & ((churn_day[acc] < 0) | (day < churn_day[acc]))
    acc, day = acc[alive], day[alive]
    rate = 1 / (1 + np.exp(-engagement[acc, day]))
    users = np.minimum(rng.binomial(seats[acc], rate), seats[acc])
    logins = users * rng.integers(1, 3, len(acc))
    minutes = np.round(logins * rng.gamma(2.0, 9.0, len(acc)), 1)
    usage = pd.DataFrame({"account_id": ids[acc], "date": (first + pd.to_timedelta(day, unit="D")).strftime("%Y-%m-%d"),
                          "active_users": users, "logins": logins, "session_minutes": minutes,
                          "tracks_played": logins * rng.integers(0, 12, len(acc))})
    gone = churn_day >= 0
    churn = pd.DataFrame({"account_id": ids[gone],
                          "churned_at": (first + pd.to_timedelta(churn_day[gone], unit="D")).strftime("%Y-%m-%dT%H:%M:%S+00:00")})
    data = root / "data"
    data.mkdir(parents=True)
    for name, frame in (("accounts", accounts_frame), ("usage_daily", usage), ("churn", churn)):
        frame.to_csv(data / f"{name}.csv", index=False)
    return Shape("consumer_monthly", data, every="7d", start="2023-06-01",
                 expect_without_data=("support", "effort", "communication", "surveys", "risk_events", "text", "experience"))


SHAPES: dict[str, Callable[[Path], Shape]] = {
    "usage_only": usage_only, "weekly_six_months": weekly_six_months, "terms_with_renewals": terms_with_renewals,
    "consumer_monthly": consumer_monthly,
}
