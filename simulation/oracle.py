"""The oracle: the true probability that an account churns within h days of a cutoff.

How it is computed. The simulator's churn hazard depends only on the latent state and known
calendar facts: today's health h, the account's baseline mu, whether it still has an executive
sponsor, its billing term and renewal dates, plus an unforeseeable hazard. Given the state at the
end of the day before the cutoff (read from truth/), the oracle runs the simulator's own dynamics
forward (`simulation.config.Dynamics`: the same AR(1) health, the same shock rates and sizes, the
same hazard) on `n_paths` Monte Carlo paths and returns

    P(churn within h days) = 1 - mean over paths of prod_{d < h} (1 - hazard_d).

It uses nothing after the cutoff, so it is the best any model can do with perfect knowledge of the
present; a model that beats it on realised labels is exploiting noise (or a bug). Monte Carlo error
is about sqrt(p(1-p)/n_paths) per probability; for ranking metrics it is far smaller, because
common random numbers are shared across snapshots. Two shocks of different kinds on the same
day of the same path are not drawn (the simulator allows it; the chance is below 1e-5 a day).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from core.errors import InputError
from core.vocabulary import HORIZONS
from simulation.accounts import renewal_days
from simulation.config import Dynamics, SimulationConfig
from simulation.latent import SHOCK_ORDER


def load_truth(truth_dir: str | Path) -> dict:
    truth_dir = Path(truth_dir)
    meta_path = truth_dir / "meta.json"
    if not meta_path.is_file():
        raise InputError(f"{truth_dir}: no meta.json; expected the truth/ folder written by `churn simulate`")
    meta = json.loads(meta_path.read_text())
    return {
        "dir": truth_dir,
        "config": SimulationConfig(**meta["config"]),
        "dynamics": Dynamics(**meta["dynamics"]),
        "offset": float(meta["hazard_offset"]),
        "unforeseeable": float(meta["unforeseeable_daily_hazard"]),
        "accounts": pd.read_parquet(truth_dir / "accounts.parquet"),
        "shocks": pd.read_parquet(truth_dir / "shocks.parquet"),
        "causes": pd.read_parquet(truth_dir / "churn_causes.parquet"),
    }


def churn_probability(
    truth_dir: str | Path,
    snapshots: pd.DataFrame,
    *,
    horizons: tuple[int, ...] = HORIZONS,
    n_paths: int = 128,
    seed: int = 0,
    chunk: int = 4096,
) -> pd.DataFrame:
    """Oracle probabilities for (account_id, cutoff) rows; columns `oracle_{h}d`.

    Rows whose account has not started or has already churned at the cutoff, or whose cutoff is not
    inside the simulated window, get NaN: no snapshot exists for them.
    """
    truth = load_truth(truth_dir)
    config: SimulationConfig = truth["config"]
    dyn: Dynamics = truth["dynamics"]
    window = pd.Timestamp(config.start, tz="UTC")
    cutoff = pd.to_datetime(snapshots["cutoff"], utc=True)
    cut_day = ((cutoff - window) // pd.Timedelta(days=1)).to_numpy(dtype=np.int64)

    accounts = truth["accounts"].set_index("account_id")
    known = snapshots["account_id"].isin(accounts.index).to_numpy()
    if not known.all():
        missing = snapshots.loc[~known, "account_id"].head(5).tolist()
        raise InputError(
            f"oracle: account_id {missing} not in {truth['dir']}/accounts.parquet; expected simulated accounts"
        )
    acc = accounts.loc[snapshots["account_id"]]
    churn_day = (
        ((truth["causes"].set_index("account_id")["churned_at"] - window) // pd.Timedelta(days=1))
        .reindex(snapshots["account_id"])
        .to_numpy(dtype="float64")
    )
    state = _state_before(truth["dir"], snapshots["account_id"].to_numpy(dtype=object), cut_day)
    sponsor_gone = truth["shocks"].query("kind == 'sponsor_left'")
    left_day = (
        sponsor_gone.groupby("account_id")["day"].min().reindex(snapshots["account_id"]).to_numpy(dtype="float64")
    )
    has_sponsor = acc["exec_sponsor"].to_numpy(dtype=bool) & ~(left_day < cut_day)

    valid = (
        (cut_day >= 1)
        & (cut_day <= config.days)
        & (acc["start_day"].to_numpy() < cut_day)
        & ~(churn_day < cut_day)
        & ~np.isnan(state["health"])
    )
    max_h = max(horizons)
    renewal = renewal_days(
        acc["start_day"].to_numpy(), acc["billing"].to_numpy(dtype=object), config.start, config.days + max_h + 1
    )
    annual = (acc["billing"] == "annual").to_numpy()
    out = np.full((len(snapshots), len(horizons)), np.nan)
    rows = np.flatnonzero(valid)
    rng = np.random.default_rng(seed)
    for start in range(0, len(rows), chunk):
        idx = rows[start : start + chunk]
        out[idx] = _forward(
            rng,
            dyn,
            truth["offset"],
            truth["unforeseeable"],
            state["health"][idx],
            state["baseline"][idx],
            has_sponsor[idx],
            annual[idx],
            renewal[idx],
            cut_day[idx],
            horizons,
            n_paths,
        )
    result = snapshots[["account_id", "cutoff"]].reset_index(drop=True).copy()
    for j, h in enumerate(horizons):
        result[f"oracle_{h}d"] = out[:, j]
    return result


def _state_before(truth_dir: Path, account_id: np.ndarray, cut_day: np.ndarray) -> dict[str, np.ndarray]:
    """Health and baseline at the end of the day before each cutoff (NaN if not alive then)."""
    wanted = pd.DataFrame({"account_id": account_id, "day": cut_day - 1})
    days = np.unique(wanted["day"])
    table = ds.dataset(truth_dir / "daily.parquet").to_table(
        columns=["account_id", "day", "health", "baseline"], filter=ds.field("day").isin(days.astype(np.int32))
    )
    daily = table.to_pandas()
    daily["account_id"] = daily["account_id"].astype("str")
    wanted["account_id"] = wanted["account_id"].astype("str")
    merged = wanted.merge(daily.astype({"day": np.int64}), on=["account_id", "day"], how="left")
    return {
        "health": merged["health"].to_numpy(dtype=np.float64),
        "baseline": merged["baseline"].to_numpy(dtype=np.float64),
    }


def _forward(rng, dyn: Dynamics, offset, unforeseeable, h0, mu0, sponsor0, annual, renewal, cut_day, horizons, n_paths):
    s = len(h0)
    h = np.repeat(h0[:, None], n_paths, axis=1)
    mu = np.repeat(mu0[:, None], n_paths, axis=1)
    sponsor = np.repeat(sponsor0[:, None], n_paths, axis=1)
    survival = np.ones((s, n_paths))
    rates = np.array([dyn.shocks[k].daily_rate for k in SHOCK_ORDER])
    total = 1.0 - np.prod(1.0 - rates)
    cum = np.cumsum(rates) / rates.sum()
    magnitude = np.array([dyn.shocks[k].magnitude for k in SHOCK_ORDER])
    on_mu = np.array([dyn.shocks[k].target == "mu" for k in SHOCK_ORDER])
    needs_sponsor = np.array([dyn.shocks[k].needs_sponsor for k in SHOCK_ORDER])
    out = np.empty((s, len(horizons)))
    rows = np.arange(s)
    want = {h: j for j, h in enumerate(horizons)}
    for d in range(max(horizons)):
        h = mu + dyn.phi * (h - mu) + dyn.sigma * rng.standard_normal((s, n_paths))
        hit = rng.random((s, n_paths)) < total
        if hit.any():
            i, p = np.nonzero(hit)
            kind = np.searchsorted(cum, rng.random(len(i)))
            ok = ~needs_sponsor[kind] | sponsor[i, p]
            i, p, kind = i[ok], p[ok], kind[ok]
            change = magnitude[kind]
            perm = on_mu[kind]
            mu[i[perm], p[perm]] += change[perm]
            h[i, p] += change
            lost = needs_sponsor[kind]
            sponsor[i[lost], p[lost]] = False
        day = cut_day + d
        lam = dyn.daily_hazard(h, annual[:, None], renewal[rows, day][:, None], offset, unforeseeable)
        survival *= 1.0 - lam
        if d + 1 in want:
            out[:, want[d + 1]] = 1.0 - survival.mean(axis=1)
    return out
