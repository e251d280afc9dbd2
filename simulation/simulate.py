"""Run the simulator block by block and write the input tables and truth/.

Each block of `BLOCK_SIZE` accounts has its own random stream derived from the seed, so memory
stays flat as the base grows and the output depends only on the seed and the sizes. Big tables are
streamed block by block into one Parquet file each; everything is staged in a hidden folder and
moved into place only when the whole run succeeded.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.io import staged_output
from simulation.accounts import make_accounts, renewal_days
from simulation.config import BLOCK_SIZE, Dynamics, SimulationConfig, calibrate_offset, unforeseeable_daily_hazard
from simulation.latent import simulate_latent
from simulation.observed import day_factors, make_account_events, make_surveys, make_usage, to_timestamp
from simulation.support import make_support

log = logging.getLogger(__name__)

STREAMED = ("usage_daily", "tickets", "ticket_events", "ticket_messages", "surveys", "account_events")
UNFORESEEABLE_CAUSES = np.array(["budget_cut", "acquisition"], dtype=object)
HEALTH_DRIVERS = ("product_incident", "billing_dispute", "security_incident", "sponsor_left", "champion_left")


@dataclass
class SimulationSummary:
    out: str
    accounts: int
    days: int
    seed: int
    churned: int
    annual_churn_rate: float
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return self.__dict__.copy()


class _Writers:
    """One Parquet writer per streamed table; the schema is fixed by the first block."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.writers: dict[str, pq.ParquetWriter] = {}
        self.rows: dict[str, int] = {}

    def write(self, name: str, frame: pd.DataFrame) -> None:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if name not in self.writers:
            path = self.folder / f"{name}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            self.writers[name] = pq.ParquetWriter(path, table.schema, compression="zstd")
        self.writers[name].write_table(table.cast(self.writers[name].schema))
        self.rows[name] = self.rows.get(name, 0) + len(frame)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


def simulate(
    config: SimulationConfig,
    out_dir: str | Path,
    *,
    dynamics: Dynamics | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SimulationSummary:
    """Simulate a customer base and write it to `out_dir` (input tables + truth/)."""
    started = time.perf_counter()
    dynamics = dynamics or Dynamics()
    seeds = np.random.SeedSequence(config.seed)
    account_seed, *block_seeds = seeds.spawn(1 + -(-config.accounts // BLOCK_SIZE))
    accounts, traits = make_accounts(config, dynamics, np.random.default_rng(account_seed))
    annual_share = float((accounts["billing"] == "annual").mean())
    offset = calibrate_offset(config, dynamics, annual_share)
    unforeseeable = unforeseeable_daily_hazard(config)
    day_factor, _ = day_factors(config.start, config.days)

    with staged_output(out_dir) as stage:
        writers = _Writers(stage)
        churn_frames, cause_frames, shock_frames = [], [], []
        ticket_offset = message_offset = 0
        exposure_days = 0.0
        try:
            for b, block_seed in enumerate(block_seeds):
                rows = slice(b * BLOCK_SIZE, min((b + 1) * BLOCK_SIZE, config.accounts))
                block = _simulate_block(
                    np.random.default_rng(block_seed),
                    config,
                    dynamics,
                    accounts.iloc[rows],
                    traits.iloc[rows],
                    offset,
                    unforeseeable,
                    day_factor,
                    ticket_offset,
                    message_offset,
                )
                for name in STREAMED:
                    writers.write(name, block[name])
                writers.write("truth/daily", block["truth_daily"])
                writers.write("truth/tickets", block["truth_tickets"])
                writers.write("truth/messages", block["truth_messages"])
                ticket_offset += len(block["tickets"])
                message_offset += len(block["ticket_messages"])
                churn_frames.append(block["churn"])
                cause_frames.append(block["causes"])
                shock_frames.append(block["shocks"])
                exposure_days += block["exposure_days"]
                if progress:
                    progress(rows.stop, config.accounts)
        finally:
            writers.close()
        churn = pd.concat(churn_frames, ignore_index=True)
        accounts.to_parquet(stage / "accounts.parquet", index=False)
        churn.to_parquet(stage / "churn.parquet", index=False)
        pd.concat(cause_frames, ignore_index=True).to_parquet(stage / "truth" / "churn_causes.parquet", index=False)
        pd.concat(shock_frames, ignore_index=True).to_parquet(stage / "truth" / "shocks.parquet", index=False)
        traits.assign(
            billing=accounts["billing"].to_numpy(), exec_sponsor=accounts["exec_sponsor"].to_numpy()
        ).to_parquet(stage / "truth" / "accounts.parquet", index=False)
        rate = 1 - float(np.exp(-len(churn) / max(exposure_days / 365.25, 1e-9)))
        meta = {
            "config": json.loads(config.model_dump_json()),
            "dynamics": json.loads(dynamics.model_dump_json()),
            "hazard_offset": offset,
            "unforeseeable_daily_hazard": unforeseeable,
            "realised_annual_churn_rate": rate,
        }
        (stage / "truth" / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        rows = {
            "accounts": len(accounts),
            "churn": len(churn),
            **{k: v for k, v in writers.rows.items() if not k.startswith("truth/")},
        }
    return SimulationSummary(
        out=str(out_dir),
        accounts=config.accounts,
        days=config.days,
        seed=config.seed,
        churned=len(churn),
        annual_churn_rate=round(rate, 4),
        rows=rows,
        seconds=round(time.perf_counter() - started, 2),
    )


def _simulate_block(
    rng, config, dynamics, accounts, traits, offset, unforeseeable, day_factor, ticket_offset, message_offset
):
    account_id = accounts["account_id"].to_numpy(dtype=object)
    seats = accounts["seats"].to_numpy()
    arr = accounts["arr"].to_numpy()
    sponsor = accounts["exec_sponsor"].to_numpy(dtype=bool)
    annual = (accounts["billing"] == "annual").to_numpy()
    start_day = traits["start_day"].to_numpy()
    renewal = renewal_days(start_day, accounts["billing"].to_numpy(dtype=object), config.start, config.days)
    latent = simulate_latent(
        rng=rng,
        dynamics=dynamics,
        start_day=start_day,
        mu0=traits["mu0"].to_numpy(),
        failed_onboarding=traits["failed_onboarding"].to_numpy(),
        exec_sponsor=sponsor,
        annual=annual,
        renewal=renewal,
        n_days=config.days,
        offset=offset,
        unforeseeable=unforeseeable,
    )
    usage = make_usage(rng, latent, traits, seats, account_id, config.start, day_factor)
    support = make_support(
        rng, latent, traits, seats, account_id, config.start, day_factor, ticket_offset, message_offset
    )
    surveys = make_surveys(rng, latent, account_id, config.start)
    events = make_account_events(rng, latent, account_id, arr, sponsor, renewal, config.start)

    churned = np.flatnonzero(latent.churn_day >= 0)
    churned_at = to_timestamp(config.start, latent.churn_day[churned], rng.uniform(0, 86_399, len(churned)))
    churn = pd.DataFrame({"account_id": pd.Series(account_id[churned], dtype="str"), "churned_at": churned_at})
    causes = _churn_causes(rng, latent, churned, traits["failed_onboarding"].to_numpy(), dynamics)
    causes.insert(0, "account_id", pd.Series(account_id[churned], dtype="str"))
    causes.insert(1, "churned_at", churned_at)

    acc, day = np.nonzero(latent.alive)
    truth_daily = pd.DataFrame(
        {
            "account_id": pd.Series(account_id[acc], dtype="str"),
            "day": day.astype(np.int32),
            "health": latent.health[acc, day],
            "baseline": latent.baseline[acc, day],
            "hazard": latent.hazard[acc, day],
        }
    )
    shocks = latent.shocks.assign(account_id=pd.Series(account_id[latent.shocks["acc"].to_numpy()], dtype="str"))
    shocks = shocks[["account_id", "day", "kind"]].astype({"kind": "str"})
    return {
        "usage_daily": usage,
        "tickets": support.tickets,
        "ticket_events": support.ticket_events,
        "ticket_messages": support.ticket_messages,
        "surveys": surveys,
        "account_events": events,
        "churn": churn,
        "causes": causes,
        "shocks": shocks,
        "truth_daily": truth_daily,
        "truth_tickets": support.truth,
        "truth_messages": support.message_truth,
        "exposure_days": float(latent.alive.sum()),
    }


def _churn_causes(rng, latent, churned: np.ndarray, failed_onboarding: np.ndarray, dynamics: Dynamics) -> pd.DataFrame:
    """Why each account churned: an unforeseeable cause, or the health driver behind it: the largest
    shock still felt at churn (a transient one within 30 days, a lasting one within 120), else a
    failed onboarding, else gradual decline."""
    day = latent.churn_day[churned]
    cause = np.where(latent.unforeseeable[churned], "unforeseeable", "health").astype(object)
    driver = np.full(len(churned), "gradual_decline", dtype=object)
    driver[failed_onboarding[churned]] = "failed_onboarding"
    s = latent.shocks[latent.shocks["kind"].isin(HEALTH_DRIVERS)]
    if len(s) and len(churned):
        position = pd.Series(np.arange(len(churned)), index=churned)
        s = s[s["acc"].isin(churned)]
        s = s.assign(
            pos=position.reindex(s["acc"].to_numpy()).to_numpy(),
            churn_day=day[position.reindex(s["acc"].to_numpy()).to_numpy()],
        )
        reach = np.where(s["kind"].isin(["product_incident", "billing_dispute", "security_incident"]), 30, 120)
        s = s[(s["day"] <= s["churn_day"]) & (s["day"] > s["churn_day"] - reach)]
        size = {k: abs(shock.magnitude) for k, shock in dynamics.shocks.items()}
        s = s.assign(size=s["kind"].map(size)).sort_values(["size", "day"]).drop_duplicates("pos", keep="last")
        driver[s["pos"].to_numpy()] = s["kind"].to_numpy(dtype=object)
    unforeseen = cause == "unforeseeable"
    driver[unforeseen] = UNFORESEEABLE_CAUSES[rng.integers(0, 2, int(unforeseen.sum()))]
    return pd.DataFrame({"cause": pd.Series(cause, dtype="str"), "driver": pd.Series(driver, dtype="str")})
