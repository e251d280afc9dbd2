"""The explainability report for CS leadership: one self-contained HTML file (figures inline as
PNG data URIs, no scripts, no external requests), written for a reader who is not a data
scientist. Pure: it takes the tables and numbers and returns the HTML; pipelines/report.py
gathers them and writes the file.

Sections: accounts and ARR at risk by horizon and segment; what drives risk across the base;
the accounts most at risk with owner, renewal and reasons; the escalation funnel; escalations and
their outcomes (precision, ARR saved, ratings, time to acknowledge, the holdout); model health
(backtest, calibration, drift between training data and the latest snapshot).
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.vocabulary import BANDS, HORIZONS
from models.plots import beeswarm_figure, pyplot, waterfall_figure
from models.reasons import point_size


@dataclass
class ReportInputs:
    as_of: str
    # account_id, p_30d..p_180d, tier, reason_1..3, segment, arr_current, days_to_renewal, account_name, csm_owner
    scores: pd.DataFrame
    family_importance: pd.Series  # driver family (and "context") -> mean |points| on the 90-day risk
    feature_importance: pd.DataFrame  # feature, family, role, description, mean_abs_points
    model: dict  # version, uri, trained_through, formulation
    backtest: pd.DataFrame  # model, horizon_days, roc_auc, pr_auc, brier, ece, recall_at_budget, ...
    calibration_png: bytes | None = None
    drift: pd.DataFrame = field(default_factory=pd.DataFrame)  # signal, psi, training mean, latest mean, family
    base_dip: float | None = None  # the whole base's activity in the 7 days before as_of against usual, when it dipped
    escalations: pd.DataFrame = field(default_factory=pd.DataFrame)
    follow_ups: pd.DataFrame = field(default_factory=pd.DataFrame)
    feedback: pd.DataFrame = field(default_factory=pd.DataFrame)
    policy_version: str = ""
    top_n: int = 20
    data_notes: list[str] = field(default_factory=list)  # what the model could not see (families without data)
    # shap.Explanation of the 90-day risk (readable names), one row per account of `explained`
    explanation: object | None = None
    explained: list[str] = field(default_factory=list)  # account ids of the explanation's rows
    outcomes: dict | None = None  # escalation/evaluation.py's block: escalations joined to what happened next


def _blind_spots(notes: list[str]) -> str:
    """What the model could not see: the signal families the data had nothing for."""
    if not notes:
        return ""
    items = "".join(f"<li>{html.escape(note)}</li>" for note in notes)
    return (
        "<p>What the model could not see: the data had nothing for these kinds of signal, so no score or reason "
        f"uses them.</p><ul>{items}</ul>"
    )


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _money(value: float) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    return (
        f"${value / 1e6:,.1f}M"
        if abs(value) >= 1e6
        else f"${value / 1e3:,.0f}k"
        if abs(value) >= 1e3
        else f"${value:,.0f}"
    )


def _table(frame: pd.DataFrame, classes: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f'<table class="{classes}"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def at_risk(scores: pd.DataFrame) -> pd.DataFrame:
    """Expected accounts and ARR lost per horizon (sum of probabilities), overall and by segment."""
    arr = scores["arr_current"].fillna(0).to_numpy(dtype=float)
    rows = []
    groups = [("all accounts", scores.index)] + [(str(s), g.index) for s, g in scores.groupby("segment", sort=True)]
    for name, index in groups:
        part = scores.loc[index]
        a = arr[scores.index.get_indexer(index)]
        row = {"segment": name, "accounts": len(part), "ARR": _money(a.sum())}
        for h in HORIZONS:
            p = part[f"p_{h}d"].to_numpy(dtype=float)
            row[f"{h} days: accounts"] = f"{p.sum():,.0f}"
            row[f"{h} days: ARR"] = _money(float((p * a).sum()))
        rows.append(row)
    return pd.DataFrame(rows)


#: waterfalls shown under the top-risk table (the first accounts of the table)
WATERFALLS = 10
#: most dots a beeswarm shows (a sample of the base beyond that: the picture does not change)
BEESWARM_DOTS = 2000


def _shap_figures(inputs: ReportInputs, top: pd.DataFrame) -> tuple[str, str]:
    """HTML for shap's beeswarm of the base and a waterfall per top account ("" without an explanation)."""
    e = inputs.explanation
    if e is None or not len(inputs.explained):
        return "", ""
    row = {a: i for i, a in enumerate(inputs.explained)}
    dots = np.sort(np.random.default_rng(0).permutation(len(row))[:BEESWARM_DOTS])
    sampled = f" ({len(dots):,} of {len(row):,} accounts shown)" if len(dots) < len(row) else ""
    beeswarm = (
        "<p>How each signal moves each account: one dot per account and signal. A dot right of the centre line means that signal "
        "raises the account's 90-day risk, left means it lowers it; the further out, the stronger. The colour is the signal's value "
        "for that account, red high and blue low (red dots on the right: high values raise the risk). Signals are ordered by how "
        f"much they matter across the base{sampled}. The scale is log-odds: +0.7 about doubles the odds of churning, -0.7 halves "
        f'them.</p>\n<img alt="SHAP beeswarm of the 90-day risk" src="{_palette_png(beeswarm_figure(e[dots], 90))}">'
    )
    shown = top[top["account_id"].astype(str).isin(row)].head(WATERFALLS)
    if not len(shown):
        return beeswarm, ""
    charts = "".join(
        f'<details{" open" if i == 0 else ""}><summary>{html.escape(title)}</summary><img alt="why {html.escape(str(a))} is at '
        f'risk" src="{_palette_png(waterfall_figure(e[row[str(a)]], 90, title=title))}"></details>'
        for i, (a, title) in enumerate(zip(shown["account_id"], _waterfall_titles(shown), strict=True))
    )
    which = (
        f"the first {len(shown)} of the {len(top)} accounts above"
        if len(shown) < len(top)
        else f"the {len(shown)} accounts above"
    )
    waterfalls = (
        f"<p>Why, account by account ({which}; click an account to open its chart): each chart starts at the bottom from the "
        "average account's score, E[f(X)], and adds the account's signals one by one: red bars push its 90-day risk up, blue bars "
        "pull it down, and the top, f(x), is the account's own score. The grey numbers are the account's values. Same scale as "
        f"above (log-odds).</p>\n{charts}"
    )
    return beeswarm, waterfalls


def _palette_png(fig, colours: int = 64) -> str:
    """`_png` in a palette of `colours`: shap's plots shrink to about a third, the same to the eye."""
    from PIL import Image

    raw, out = io.BytesIO(), io.BytesIO()
    fig.savefig(raw, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    Image.open(raw).convert("RGB").quantize(colours).save(out, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def _waterfall_titles(accounts: pd.DataFrame) -> list[str]:
    names = accounts["account_name"].astype("str").fillna(accounts["account_id"].astype("str"))
    return [
        f"{n} ({a}): 90-day risk {p:.0%}"
        for n, a, p in zip(names, accounts["account_id"], accounts["p_90d"], strict=True)
    ]


def _drift_section(inputs: ReportInputs) -> str:
    """Drift of the top signals between training and the latest snapshot, and, when the whole base
    dipped before the latest cutoff, that this is the calendar: usage rows that moved say so."""
    drift = inputs.drift
    shifted = drift[drift["psi"] > 0.25] if len(drift) else drift
    drift_table = (
        drift.head(10).assign(
            psi=lambda d: d["psi"].map(lambda v: f"{v:.2f}"),
            state=lambda d: (
                d["psi"].astype(float).map(lambda v: "shifted" if v > 0.25 else "shifting" if v > 0.1 else "stable")
            ),
        )
        if len(drift)
        else drift
    )
    if len(drift_table) and "family" in drift_table:
        if inputs.base_dip is not None:  # a usage level that moved with the whole base: the calendar, not churn
            dipped = (drift_table["family"] == "usage") & (drift_table["state"] != "stable")
            drift_table.loc[dipped, "state"] += " (the whole base dipped)"
        drift_table = drift_table.drop(columns="family")
    calendar_line = (
        f"In the 7 days before {inputs.as_of} the whole base was {inputs.base_dip:.0%} as active as usual: a holiday or a "
        "company-wide dip, a fact about the calendar, not about churn. The usage changes the model reads compare each day with "
        "the rest of the base that day, so the dip does not read as decline; usage levels, such as active users in the last "
        "7 days, do fall with it."
        if inputs.base_dip is not None
        else ""
    )
    return f"""<p>Drift: how much the latest data differs from the data the model learned from, for the
signals that matter most (population stability index; above 0.25 means retraining is due).
{f"{len(shifted)} of them have shifted." if len(drift) else ""} {html.escape(calendar_line)}</p>
{_table(drift_table) if len(drift) else "<p>No training data available to compare with.</p>"}"""


def _share(part: float | None, whole: float | None) -> str:
    return "-" if not whole or part is None else f"{part:.0f} of {whole:.0f} ({part / whole:.0%})"


def _minutes(value: float | None) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    return f"{value / 60:.1f} h" if value >= 120 else f"{value:.0f} min"


def _outcomes_section(block: dict | None) -> str:
    """Escalations joined to what happened next, per queue, in words a CS leader reads without a
    glossary; the holdout's verdict with its interval, or that there are too few to tell."""
    if not block:
        return "<p>No operational store was read, so nothing can be said yet about what happened after each escalation.</p>"
    if not block.get("available"):
        return f"<p>{html.escape(str(block.get('note') or 'No escalations to evaluate yet.'))}</p>"
    h, o = block["horizon_days"], block["overall"]
    end = str(block["data_end"])[:10]
    lead = (
        f"Of {block['escalations']} escalations, {o['matured']} were opened more than {h} days before {end}, "
        "so we know what happened next. "
        f"Of those, {_share(o['at_risk'], o['matured'])} were really at risk: the account churned within {h} days, or CS found it at risk "
        f"and saved it or lost it. {_share(o['churned'], o['matured'])} churned. CS saved {_money(o['arr_saved'])} of ARR on accounts that "
        f"were still customers {h} days later, out of {_money(o['arr_at_stake'])} of ARR escalated in all."
    )
    if not o["matured"]:
        lead = (
            f"{block['escalations']} escalations are recorded, all opened within the last {h} days before {end}: it is too early to "
            "know whether those accounts stay, so the figures below show only ratings and response times."
        )
    ratings = {r["queue"]: r for r in block.get("ratings_by_queue", [])}
    ack = {r["queue"]: r for r in block.get("acknowledgement_by_queue", [])}
    rows = []
    for r in block["by_queue"]:
        q, a, rating = r["queue"], ack.get(r["queue"], {}), ratings.get(r["queue"])
        within = a.get("within_window_share")
        rows.append(
            {
                "queue": q,
                "escalations": r["escalations"],
                f"known after {h} days": r["matured"],
                "really at risk": _share(r["at_risk"], r["matured"]),
                "ARR saved": _money(r["arr_saved"]),
                "handoff rating": f"{rating['rating_mean']:.1f} of 5 ({rating['ratings']})" if rating else "not rated",
                "time to acknowledge (median)": _minutes(a.get("median_ack_minutes")),
                "response window": _minutes(a.get("median_window_minutes")),
                "acknowledged in time": "-" if within is None else f"{within:.0%} of {a['acknowledged']}",
            }
        )
    by_band = "; ".join(
        f"{r['band']} escalations {_share(r['at_risk'], r['matured'])} really at risk"
        for r in block["by_band"]
        if r["matured"]
    )
    holdout = block.get("holdout") or {}
    if holdout.get("ci") and holdout.get("enough"):
        lo, hi = holdout["ci"]
        holdout_line = (
            f"{holdout['verdict']} The interval ({lo:+.1%} to {hi:+.1%}, {holdout.get('confidence', 0.95):.0%} confidence) rests on "
            f"{holdout['accounts']} accounts."
        )
    else:
        holdout_line = (
            holdout.get("verdict")
            or "No escalations were held out, so their effect cannot be measured (holdout share 0)."
        )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in block.get("notes", []))
    return (
        f"<p>{html.escape(lead)}</p>\n{_table(pd.DataFrame(rows))}\n"
        + (f"<p>By urgency: {html.escape(by_band)}.</p>\n" if by_band else "")
        + f"<p><b>Does escalating help?</b> A share of the accounts that only crossed a risk threshold can be held out: recorded, not "
        f"sent to CS, chosen at random. Comparing how many of them churned with the escalated ones measures what CS's work changes. "
        f"{html.escape(holdout_line)}</p>\n" + (f'<ul class="note">{notes}</ul>' if notes else "")
    )


def _why(top: pd.DataFrame) -> pd.Series:
    """The top reasons of each account with their points: "logins down 60% ... (+12)"."""

    def line(row: pd.Series) -> str:
        parts = []
        for k in (1, 2, 3):
            text, pts = row.get(f"reason_{k}"), row.get(f"reason_{k}_points")
            if isinstance(text, str):
                parts.append(text + (f" (+{point_size(pts)})" if pd.notna(pts) and pts >= 0.05 else ""))
        return "; ".join(parts)

    return top.apply(line, axis=1) if len(top) else pd.Series(dtype=str)


def render_report(inputs: ReportInputs) -> str:
    plt = pyplot()
    s = inputs.scores.copy()
    s["expected_arr_lost_90d"] = s["p_90d"] * s["arr_current"].fillna(0)
    total_arr = float(s["arr_current"].fillna(0).sum())
    arr_90 = float(s["expected_arr_lost_90d"].sum())
    bands = s["tier"].value_counts().reindex(list(BANDS[::-1])).fillna(0).astype(int)

    # risk by horizon and segment
    fig, ax = plt.subplots(figsize=(7, 3.2))
    segments = sorted(s["segment"].dropna().astype(str).unique())
    width = 0.8 / max(len(segments), 1)
    for k, seg in enumerate(segments):
        part = s[s["segment"].astype(str) == seg]
        values = [float((part[f"p_{h}d"] * part["arr_current"].fillna(0)).sum()) / 1e3 for h in HORIZONS]
        ax.bar(np.arange(len(HORIZONS)) + k * width, values, width, label=seg)
    ax.set_xticks(np.arange(len(HORIZONS)) + width * (len(segments) - 1) / 2, [f"within {h} days" for h in HORIZONS])
    ax.set_ylabel("ARR expected to churn ($k)")
    ax.legend(title="segment", fontsize=8)
    ax.set_title("Revenue at risk, by how soon and by segment")
    risk_png = _png(fig)

    # drivers across the base
    fam = inputs.family_importance.sort_values()
    imp = inputs.feature_importance
    drivers, context = imp[imp["role"] == "driver"], imp[imp["role"] == "context"]
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(fam) + 1))
    ax.barh(
        fam.index.astype(str), fam.to_numpy(), color=["#999999" if f == "context" else "#4c72b0" for f in fam.index]
    )
    ax.set_xlabel("average effect on the 90-day risk, percentage points (up or down)")
    ax.set_title("What drives churn risk across the customer base")
    drivers_png = _png(fig)

    top = s.sort_values("expected_arr_lost_90d", ascending=False).head(inputs.top_n)
    top_table = pd.DataFrame(
        {
            "account": top["account_name"].astype("str").fillna(top["account_id"].astype("str"))
            + " ("
            + top["account_id"].astype(str)
            + ")",
            "segment": top["segment"].astype(str),
            "ARR": top["arr_current"].map(_money),
            "90-day risk": top["p_90d"].map(lambda p: f"{p:.0%}"),
            "renewal in": top["days_to_renewal"].map(lambda d: "-" if pd.isna(d) else f"{d:.0f} days"),
            "owner": top["csm_owner"].astype("str").fillna("unassigned"),
            "why (points added to the 90-day risk)": _why(top),
        }
    )
    beeswarm_html, waterfalls_html = _shap_figures(inputs, top)
    features_table, context_table = (
        part.head(n)
        .assign(effect=lambda f: f["mean_abs_points"].map(lambda v: f"{v:.1f} points"))[
            ["description", "family", "effect"]
        ]
        .rename(columns={"effect": "average effect"})
        for part, n in ((drivers, 10), (context, 5))
    )

    # escalation funnel
    esc, fol, fb = inputs.escalations, inputs.follow_ups, inputs.feedback
    flagged = int((s["tier"] != "none").sum())
    escalated = len(esc)
    on_time = int(((fol["done_at"].notna()) & (fol["done_at"] <= fol["due_at"])).sum()) if len(fol) else 0
    late = int(((fol["done_at"].notna()) & (fol["done_at"] > fol["due_at"])).sum()) if len(fol) else 0
    pending = int(fol["done_at"].isna().sum()) if len(fol) else 0
    funnel = pd.DataFrame(
        {
            "stage": [
                "flagged by the daily run (watch or above)",
                "escalations opened",
                "follow-ups done on time",
                "follow-ups done late",
                "follow-ups still open",
                "handoffs rated by CS",
                "accounts saved",
                "accounts churned",
            ],
            "count": [
                flagged,
                escalated,
                on_time,
                late,
                pending,
                len(fb),
                int((fb.get("outcome", pd.Series(dtype=str)) == "saved").sum()),
                int((fb.get("outcome", pd.Series(dtype=str)) == "churned").sum()),
            ],
        }
    )
    rating = f"{fb['rating'].mean():.1f} of 5 ({len(fb)} ratings)" if len(fb) else "no ratings yet"
    queues = (
        esc.groupby("queue").size().rename("escalations").reset_index()
        if len(esc)
        else pd.DataFrame(columns=["queue", "escalations"])
    )

    # model health
    bt = inputs.backtest
    # the served model's rows: the curve's, or a promoted logistic baseline's
    served = "logistic" if inputs.model.get("formulation") == "logistic" else "lightgbm"
    health = bt[bt["model"].isin([served, "rules"])].copy() if len(bt) else bt
    if len(health):
        health = pd.DataFrame(
            {
                "model": health["model"].map({served: "risk model", "rules": "rules only (for comparison)"}),
                "horizon": health["horizon_days"].map(lambda h: f"{h} days"),
                "ranks churners above others (ROC-AUC)": health["roc_auc"].map(lambda v: f"{v:.2f}"),
                "calibration error (ECE)": health["ece"].map(lambda v: f"{v:.3f}"),
                "churners caught with 5% of accounts": health["recall_at_budget"].map(lambda v: f"{v:.0%}"),
            }
        )
    calibration = (
        f'<img alt="calibration curve" src="data:image/png;base64,{base64.b64encode(inputs.calibration_png).decode()}">'
        if inputs.calibration_png
        else "<p>No calibration figure was logged with this model.</p>"
    )

    m = inputs.model
    esc_line = (
        f"{escalated} escalations are in the store, {pending} follow-ups are still open; handoff quality: {rating}."
        if escalated
        else "No escalations are recorded yet."
    )
    summary = (
        (
            f"As of {inputs.as_of}, {len(s):,} live accounts carry {_money(total_arr)} of ARR. The model expects "
            f"{_money(arr_90)} ({arr_90 / total_arr:.1%} of ARR) to churn within 90 days. "
            f"{bands['critical']} accounts need action now (critical), {bands['high']} are high risk and "
            f"{bands['watch']} are on the watch list. " + esc_line
        )
        if total_arr
        else f"As of {inputs.as_of}: no accounts to report."
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Churn risk report, {html.escape(inputs.as_of)}</title>
<style>
body {{ font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1100px;
  color: #222; line-height: 1.45; }}
h1 {{ font-size: 1.6em; }} h2 {{ margin-top: 1.8em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }}
table {{ border-collapse: collapse; margin: .6em 0; font-size: .9em; }}
th, td {{ border: 1px solid #ddd; padding: .3em .6em; text-align: left; vertical-align: top; }}
th {{ background: #f4f6f8; }} .lead {{ font-size: 1.1em; background: #f4f8fb; padding: .8em 1em; border-left: 4px solid #4c72b0; }}
.note {{ color: #555; font-size: .9em; }} img {{ max-width: 100%; }}
</style></head><body>
<h1>Churn risk report</h1>
<p class="note">Data as of {html.escape(inputs.as_of)} &middot; risk model version
{html.escape(str(m.get("version")))} (trained on outcomes up to
{html.escape(str(m.get("trained_through") or "-")[:10])}) &middot; escalation policy
{html.escape(inputs.policy_version)}</p>
<p class="lead">{html.escape(summary)}</p>

<h2>1. Accounts and revenue at risk</h2>
<p>Each account has a probability of churning within 30, 60, 90 and 180 days. Adding them up gives how many
accounts, and how much ARR, we should expect to lose if nothing changes.</p>
{_table(at_risk(s))}
<img alt="ARR at risk by horizon and segment" src="{risk_png}">

<h2>2. What drives the risk</h2>
<p>How much each kind of signal moves an account's 90-day risk away from the average account's, in percentage points, up or down, averaged
over all accounts (exact SHAP values from the model, turned into points). Blue bars are drivers: behaviour that can change, which is what
CS can act on. The grey bar is context: who the account is (segment, industry, plan, billing, ARR, tenure, renewal date).</p>
<img alt="drivers of risk by family" src="{drivers_png}">
<p>The ten drivers that matter most:</p>
{_table(features_table)}
<p>Context that moves risk most (shown beside an account's reasons, never as one):</p>
{_table(context_table)}
{beeswarm_html}

<h2>3. The accounts most at risk</h2>
<p>Ranked by ARR expected to churn within 90 days (probability &times; ARR). "Why" lists the strongest
drivers in the account's own numbers against its past and the typical account of its segment, with the points
each adds to the 90-day risk.</p>
{_table(top_table)}
{waterfalls_html}

<h2>4. Escalations: from flag to outcome</h2>
<p>{html.escape(esc_line)}</p>
{_table(funnel)}
{_table(queues) if len(queues) else ""}

<h2>5. Escalations and outcomes</h2>
{_outcomes_section(inputs.outcomes)}

<h2>6. Can we trust the model?</h2>
<p>Measured on past months the model had not seen (a backtest). ROC-AUC is the chance that a churner is
ranked above a customer who stays (0.5 = coin flip, 1 = perfect). Calibration error is how far the stated
probabilities are from what happened (0 = exact). The last column is the share of churners CS would reach by
working the top 5% of accounts each month.</p>
{_table(health) if len(health) else "<p>No backtest was logged with this model.</p>"}
<p>Calibration: when the model says 20%, about 20% of such accounts should churn. Points on the diagonal are right.</p>
{calibration}
{_drift_section(inputs)}
{_blind_spots(inputs.data_notes)}
<p class="note">Generated by churn-platform. Model {html.escape(str(m.get("uri")))}, formulation
{html.escape(str(m.get("formulation")))}.</p>
</body></html>
"""
