"""Figures logged with every model and used by reports: calibration by horizon and SHAP importance.

Matplotlib with the Agg backend (no display needed); each function returns a Figure the caller
saves or logs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.curve import HORIZONS, LABELS


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def calibration_figure(pooled: pd.DataFrame, bins: int = 10):
    """Reliability diagram per horizon from pooled backtest predictions (equal-frequency bins):
    mean predicted probability against the observed churn rate, one line per model."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(HORIZONS), figsize=(4 * len(HORIZONS), 4), constrained_layout=True)
    for ax, h, label in zip(axes, HORIZONS, LABELS, strict=True):
        top = 0.0
        for name, group in pooled.groupby("model", sort=False):
            known = group[label].notna().to_numpy()
            p = group[f"p_{h}d"].to_numpy(dtype=float)[known]
            y = group[label].to_numpy(dtype=float, na_value=np.nan)[known]
            if len(p) == 0:
                continue
            order = np.argsort(p, kind="stable")
            chunks = np.array_split(order, min(bins, len(order)))
            px = [p[c].mean() for c in chunks]
            py = [y[c].mean() for c in chunks]
            top = max(top, max(px), max(py))
            ax.plot(px, py, marker="o", label=name)
        ax.plot([0, top or 1], [0, top or 1], color="grey", linestyle="--", linewidth=1)
        ax.set_title(f"{h} days")
        ax.set_xlabel("predicted probability")
        ax.set_ylabel("observed churn rate")
    axes[0].legend(fontsize=8)
    fig.suptitle("Calibration on backtest folds")
    return fig


def importance_figure(importance: pd.DataFrame, top: int = 20):
    """Mean |SHAP contribution| (log-odds) for the top features, coloured by family."""
    plt = _pyplot()
    shown = importance.head(top).iloc[::-1]
    families = list(dict.fromkeys(importance["family"]))
    colours = {f: plt.get_cmap("tab10")(i % 10) for i, f in enumerate(families)}
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(shown) + 1.5), constrained_layout=True)
    ax.barh(shown["feature"], shown["mean_abs_contribution"], color=[colours[f] for f in shown["family"]])
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[f]) for f in families if f in set(shown["family"])]
    ax.legend(handles, [f for f in families if f in set(shown["family"])], fontsize=8, loc="lower right")
    ax.set_xlabel("mean |contribution| to the 90-day risk (log-odds)")
    ax.set_title("What drives the risk (exact TreeSHAP)")
    return fig
