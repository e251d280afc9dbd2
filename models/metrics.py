"""Backtest metrics for churn scores, computed per horizon on (account, cutoff) rows.

Discrimination (ROC-AUC with its 95% bootstrap interval, PR-AUC), calibration (Brier, expected
calibration error), and what a CS team with a fixed capacity gets: lift in the top decile, recall
when only the top `budget` share of accounts can be worked each cutoff, the same recall weighted by
ARR, and the median lead time from the first flag to the churn for the churners that were caught.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: bootstrap_roc_auc holds at most this many row weights at once (about 40 MB per array)
WEIGHTS_AT_ONCE = 5_000_000
#: bootstrap samples behind score_metrics' ROC-AUC interval
INTERVAL_RESAMPLES = 200
#: Fewest churned accounts among a test set's rows for its ROC-AUC interval, and for `churn promote`
#: to compare two models at that horizon (models/promotion.py). Resampling a handful of churners
#: cannot show how far the figure could move: with one, every sample that draws it ranks that one
#: account again (a 0.12 ROC-AUC "within 0.10 to 0.13"), and the samples that miss it are left out.
MIN_INTERVAL_CHURNERS = 10


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Equal-frequency bins (churn is rare: equal-width bins would put nearly everything in the
    first one): sum over bins of (share of rows) x |mean predicted - observed rate|."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    if len(y) == 0:
        return float("nan")
    order = np.argsort(p, kind="stable")
    total = 0.0
    for chunk in np.array_split(order, min(bins, len(order))):
        total += len(chunk) / len(y) * abs(p[chunk].mean() - y[chunk].mean())
    return float(total)


def _flags(frame: pd.DataFrame, budget: float) -> np.ndarray:
    """Top `budget` share of accounts by score at each cutoff (at least one per cutoff)."""
    rank = frame.groupby("cutoff")["score"].rank(method="first", ascending=False)
    size = frame.groupby("cutoff")["score"].transform("size")
    return (rank <= np.maximum(1, np.floor(size * budget))).to_numpy()


def _undefined(y: np.ndarray, dropped: int, caught: int | None, churners: int) -> str | None:
    """Why some metrics of a test set are null (they are never a crash): rows without a score, a
    single class (rankings, lift and recall mean nothing), too few churned accounts for an
    interval, no churner caught (no lead time)."""
    notes = [f"{dropped:,} row{'s' if dropped > 1 else ''} without a score left out"] if dropped else []
    if len(y) == 0:
        notes.append("no test row to score: every metric is undefined")
    elif y.sum() == 0:
        notes.append(
            f"only one class among the {len(y):,} test rows (no churner): ROC-AUC, PR-AUC, lift, recall and lead time are undefined"
        )
    elif y.sum() == len(y):
        notes.append(f"only one class among the {len(y):,} test rows (all churned): ROC-AUC and PR-AUC are undefined")
    elif churners < MIN_INTERVAL_CHURNERS:
        notes.append(
            f"{churners} churned account{'s' if churners != 1 else ''} among the test rows: too few for a ROC-AUC "
            f"interval (at least {MIN_INTERVAL_CHURNERS}), and the figure itself could move far on another few"
        )
    if caught == 0 and y.sum() > 0:
        notes.append("no churner was among the accounts flagged within the budget: the lead time is undefined")
    return "; ".join(notes) or None


def bootstrap_roc_auc(
    y: np.ndarray, scores: dict[str, np.ndarray], clusters: np.ndarray, resamples: int = 1000, seed: int = 0
) -> dict[str, np.ndarray]:
    """ROC-AUC of each score on `resamples` bootstrap samples of the clusters (accounts: one
    account's snapshots at several cutoffs are not independent), the same samples for every score,
    so differences between scores keep their pairing. Each sample weights a row by how often its
    cluster was drawn; the AUC is the weighted Mann-Whitney statistic (ties count one half), NaN
    for a sample that drew a single class."""
    y = np.asarray(y, dtype=float)
    codes, _ = pd.factorize(pd.Series(clusters))
    n = int(codes.max()) + 1
    rng = np.random.default_rng(seed)
    ranked = {}  # per score: its rows' clusters and outcomes in score order, and where each run of equal scores starts
    for name, score in scores.items():
        order = np.argsort(score, kind="stable")
        values = np.asarray(score, dtype=float)[order]
        ranked[name] = (codes[order], y[order], np.flatnonzero(np.r_[True, values[1:] != values[:-1]]))
    out: dict[str, list[np.ndarray]] = {name: [] for name in scores}
    per_chunk = max(1, WEIGHTS_AT_ONCE // len(y))  # samples weighed at once: bounded memory on any panel
    for first in range(0, resamples, per_chunk):
        drawn = np.stack(
            [np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(min(per_chunk, resamples - first))]
        ).astype(float)
        for name, (clusters_in_order, positive, starts) in ranked.items():
            w = drawn[:, clusters_in_order]  # [samples, rows]: each row weighs what its cluster was drawn
            pos = np.add.reduceat(w * positive, starts, axis=1)
            neg = np.add.reduceat(w, starts, axis=1) - pos
            below = np.cumsum(neg, axis=1) - neg
            pairs = pos.sum(axis=1) * neg.sum(axis=1)  # 0 where a sample drew a single class: no AUC
            wins = (pos * (below + 0.5 * neg)).sum(axis=1)
            out[name].append(np.divide(wins, pairs, out=np.full(len(pairs), np.nan), where=pairs > 0))
    return {name: np.concatenate(parts) for name, parts in out.items()}


def interval_95(samples: np.ndarray) -> tuple[float, float]:
    """The central 95% of bootstrap samples; NaN samples (those that drew a single class) say
    nothing and are left out; none left: (NaN, NaN)."""
    samples = samples[~np.isnan(samples)]
    if len(samples) == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(samples, [2.5, 97.5])
    return float(low), float(high)


def roc_auc_interval(y: np.ndarray, p: np.ndarray, accounts: np.ndarray) -> tuple[float, float]:
    """The 95% bootstrap interval of ROC-AUC, accounts resampled (bootstrap_roc_auc): how far the
    figure could move on another draw of accounts like these."""
    return interval_95(bootstrap_roc_auc(y, {"p": p}, accounts, INTERVAL_RESAMPLES)["p"])


def score_metrics(frame: pd.DataFrame, *, budget: float = 0.05, churned_at: pd.Series | None = None) -> dict:
    """Metrics for one horizon. `frame`: account_id, cutoff, y (0/1, no nulls), score, and
    optionally arr; `churned_at`: churn time by account_id (UTC datetimes, as the churn table's
    contract types them; for lead times). A metric the rows cannot define (one class, no rows) is
    NaN and `note` says why; rows without a score are left out and counted in `note`.
    `roc_auc_low` / `roc_auc_high`: its 95% interval, accounts resampled (roc_auc_interval), null
    with fewer than MIN_INTERVAL_CHURNERS churned accounts."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    scored = frame["score"].notna().to_numpy()
    dropped = int((~scored).sum())
    frame = frame[scored]
    y = frame["y"].to_numpy(dtype=float)
    p = frame["score"].to_numpy(dtype=float)
    out: dict = {
        "rows": len(frame),
        "positives": int(y.sum()),
        "base_rate": float(y.mean()) if len(y) else float("nan"),
    }
    both = 0 < y.sum() < len(y)
    churners = out["churned_accounts"] = int(frame.loc[y == 1, "account_id"].nunique())
    out["roc_auc"] = float(roc_auc_score(y, p)) if both else float("nan")
    out["roc_auc_low"], out["roc_auc_high"] = (
        roc_auc_interval(y, p, frame["account_id"].to_numpy())
        if both and churners >= MIN_INTERVAL_CHURNERS
        else (np.nan,) * 2
    )
    out["pr_auc"] = float(average_precision_score(y, p)) if both else float("nan")
    out["brier"] = float(np.mean((p - y) ** 2)) if len(y) else float("nan")
    out["ece"] = expected_calibration_error(y, p)
    top = p >= np.quantile(p, 0.9) if len(p) else np.zeros(0, dtype=bool)
    out["lift_top_decile"] = float(y[top].mean() / y.mean()) if len(y) and y.mean() > 0 else float("nan")
    flagged = _flags(frame, budget)
    caught = flagged & (y == 1)
    out["budget"] = budget
    out["recall_at_budget"] = float(caught.sum() / y.sum()) if y.sum() else float("nan")
    if "arr" in frame:
        arr = frame["arr"].to_numpy(dtype=float)
        out["arr_recall_at_budget"] = (
            float((arr * caught).sum() / (arr * y).sum()) if (arr * y).sum() > 0 else float("nan")
        )
    if churned_at is not None:
        hits = frame.loc[caught, ["account_id", "cutoff"]]
        first = hits.groupby("account_id")["cutoff"].min()
        lead = (churned_at.reindex(first.index) - first).dt.total_seconds() / 86400
        out["median_lead_days"] = float(lead.median()) if len(lead) else float("nan")
        out["caught_accounts"] = int(len(first))
    out["note"] = _undefined(y, dropped, out.get("caught_accounts"), churners)
    return out
