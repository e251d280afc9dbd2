"""Figures logged with every model and used by reports: calibration by horizon, SHAP importance,
and shap's own beeswarm (the base) and waterfall (one account) plots.

Matplotlib with the Agg backend (no display needed); each function returns a Figure the caller
saves or logs. SHAP values are in log-odds: +0.69 doubles an account's odds of churning.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping

import numpy as np
import pandas as pd

from core.vocabulary import HORIZONS, LABELS


def pyplot():
    """matplotlib.pyplot on the Agg backend (files, no screen); imported when first drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def calibration_figure(pooled: pd.DataFrame, bins: int = 10):
    """Reliability diagram per horizon from pooled backtest predictions (equal-frequency bins):
    mean predicted probability against the observed churn rate, one line per model."""
    plt = pyplot()
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
    plt = pyplot()
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


def readable(explanation, specs: Mapping):
    """The same explanation named as the feature dictionary describes each feature (without its
    parenthetical remarks, shortened to fit a plot's margin)."""
    import shap

    def name(feature: str) -> str:
        spec = specs.get(feature)
        return textwrap.shorten(re.sub(r" \([^)]*\)", "", spec.description), 60, placeholder="...") if spec else feature

    return shap.Explanation(
        explanation.values,
        base_values=explanation.base_values,
        data=explanation.data,
        display_data=explanation.display_data,
        feature_names=[name(f) for f in explanation.feature_names],
    )


def beeswarm_figure(explanation, horizon_days: int = 90, max_display: int = 12, title: str | None = None):
    """shap's beeswarm of many accounts: one dot per account and signal, placed by how far it moves
    that account's risk score (log-odds), coloured by the signal's value."""
    import shap

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 0.45 * max_display + 1.8))
    shap.plots.beeswarm(
        explanation,
        max_display=max_display,
        ax=ax,
        show=False,
        plot_size=None,
        color_bar_label="the signal's value (red high, blue low)",
    )
    ax.set_xlabel(f"effect on the {horizon_days}-day churn risk, in log-odds (left lowers it, right raises it)")
    ax.set_title(title or f"How each signal moves the {horizon_days}-day churn risk, account by account")
    return fig


def waterfall_figure(row, horizon_days: int = 90, max_display: int = 10, title: str = ""):
    """shap's waterfall of one account: from the base's average score E[f(X)] (bottom), each
    signal's push up (red) or down (blue), to the account's own score f(x) (top), in log-odds."""
    import shap

    plt = pyplot()
    plt.figure()
    shap.plots.waterfall(row, max_display=max_display, show=False)
    fig = plt.gcf()
    fig.axes[0].set_xlabel(f"{horizon_days}-day churn risk score, in log-odds (+0.69 doubles the odds)", labelpad=22)
    if title:
        fig.suptitle(title, y=1.03)
    return fig


def explanation_figures(
    model, panel: pd.DataFrame, specs: Mapping | None = None, horizons: tuple[int, ...] = HORIZONS
) -> dict:
    """{name: Figure} to log with a model: the beeswarm of `panel` (a sample of the latest cutoff)
    at each horizon, as `shap_beeswarm_<h>d`."""
    from features.registry import feature_specs
    from models.explain import explanation

    specs = feature_specs() if specs is None else specs
    return {f"shap_beeswarm_{h}d": beeswarm_figure(readable(explanation(model, panel, h), specs), h) for h in horizons}
