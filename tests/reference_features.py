"""A slow, obviously correct reference for the snapshot features: plain loops over one account.

Written independently of features/ (it shares only the parameters, the feature names and the usage
calendar's three constants), from the definitions in the feature dictionary. Timestamps are
compared exactly as the fast path does: rows strictly before the cutoff; a usage day counts once it
is complete (date + 1 day <= cutoff).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from core.contracts import TERM_MONTHS, TICKET_CATEGORIES
from features.context import FeatureParams
from features.families.usage import FULL_BASE, LEVEL_DAYS, MIN_WEIGHT

DAY = pd.Timedelta(days=1)
NAN = float("nan")
MEASURES = ("active_users", "logins", "key_feature_events", "api_calls", "distinct_features_used")


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else NAN


def _ratio(num: float, den: float) -> float:
    if num is None or den is None or math.isnan(num) or math.isnan(den) or den <= 0:
        return NAN
    return num / den


class Reference:
    def __init__(self, tables: dict[str, pd.DataFrame], params: FeatureParams):
        self.t = tables
        self.p = params
        self.by_account = {
            name: dict(tuple(frame.groupby("account_id"))) for name, frame in tables.items() if "account_id" in frame
        }
        tickets = tables["tickets"]
        self.ticket_account = dict(zip(tickets["ticket_id"], tickets["account_id"], strict=True))
        self.events_by_ticket = dict(tuple(tables["ticket_events"].groupby("ticket_id")))
        self.messages_by_ticket = dict(tuple(tables["ticket_messages"].groupby("ticket_id")))
        self.weights: dict[str, pd.DataFrame] = {}
        self.averages: dict[pd.Timestamp, float] = {}  # the base's mean ARR by cutoff
        self.base = self._daily(tables["usage_daily"])  # every account's usage summed per day

    def rows(self, table: str, account: str) -> pd.DataFrame:
        return self.by_account[table].get(account, self.t[table].iloc[0:0])

    def features(self, account: str, cutoff: pd.Timestamp) -> dict:
        out: dict = {}
        out.update(self.business(account, cutoff))
        out.update(self.risk_events(account, cutoff))
        out.update(self.support(account, cutoff))
        out.update(self.surveys(account, cutoff))
        out.update(self.usage(account, cutoff))
        out.update(self.text(account, cutoff))
        out.update(self.experience(account, cutoff))
        return out

    def experience(self, account: str, c: pd.Timestamp) -> dict:
        outcomes = self.t.get("ticket_outcomes")
        if outcomes is None:
            return dict.fromkeys(
                [
                    "predicted_csat_90d",
                    "predicted_ces_90d",
                    "predicted_unhappy_tickets_90d",
                    "predicted_high_effort_tickets_90d",
                ],
                NAN,
            )
        rows = [r for r in outcomes[outcomes["account_id"] == account].itertuples() if c - 90 * DAY <= r.at < c]
        rows = [r for r in rows if not (math.isnan(r.predicted_csat) and math.isnan(r.predicted_ces))]
        csat = [r.predicted_csat for r in rows if not math.isnan(r.predicted_csat)]
        ces = [r.predicted_ces for r in rows if not math.isnan(r.predicted_ces)]
        return {
            "predicted_csat_90d": _mean(csat),
            "predicted_ces_90d": _mean(ces),
            "predicted_unhappy_tickets_90d": float(sum(v < 3 for v in csat)),
            "predicted_high_effort_tickets_90d": float(sum(v >= 5 for v in ces)),
        }

    # --- text (aggregates of per-message signals) -----------------------------------------------
    def text(self, account: str, c: pd.Timestamp) -> dict:
        names = [
            "customer_sentiment_30d",
            "customer_sentiment_90d",
            "sentiment_change_30d",
            "negative_messages_30d",
            "critical_moments_90d",
            "days_since_critical_moment",
            "cancel_mentions_90d",
            "supervisor_requests_90d",
            "legal_mentions_90d",
            "rephrasings_30d",
            "questions_asked_three_times_90d",
            "repeated_tickets_text_90d",
            "frustration_drift_90d",
        ]
        signals = self.t.get("message_signals")
        if signals is None:
            return dict.fromkeys(names, NAN)
        rows = [
            r
            for r in signals[signals["account_id"] == account].itertuples()
            if r.author == "customer" and r.sent_at < c
        ]
        within = lambda days, skip=0: [r for r in rows if c - (days + skip) * DAY <= r.sent_at < c - skip * DAY]  # noqa: E731
        count = lambda days, test: float(sum(bool(test(r)) for r in within(days)))  # noqa: E731
        critical = [r.sent_at for r in rows if isinstance(r.critical, str)]
        drifts = [r.drift for r in within(90) if not math.isnan(r.drift)]
        recent = _mean(r.sentiment for r in within(30))
        return {
            "customer_sentiment_30d": recent,
            "customer_sentiment_90d": _mean(r.sentiment for r in within(90)),
            "sentiment_change_30d": recent - _mean(r.sentiment for r in within(90, skip=30)),
            "negative_messages_30d": count(30, lambda r: r.negative),
            "critical_moments_90d": count(90, lambda r: isinstance(r.critical, str)),
            "days_since_critical_moment": float((c - max(critical)) / DAY) if critical else NAN,
            "cancel_mentions_90d": count(90, lambda r: r.critical == "cancel"),
            "supervisor_requests_90d": count(90, lambda r: r.critical == "supervisor"),
            "legal_mentions_90d": count(90, lambda r: r.critical in ("legal", "chargeback")),
            "rephrasings_30d": count(30, lambda r: r.rephrase),
            "questions_asked_three_times_90d": count(90, lambda r: r.asks == 3),
            "repeated_tickets_text_90d": count(90, lambda r: r.repeat_across),
            "frustration_drift_90d": _mean(drifts),
        }

    # --- usage ---------------------------------------------------------------------------------
    # --- usage: each day weighed against the rest of the base that day ------------------------------
    @staticmethod
    def _daily(usage: pd.DataFrame) -> pd.DataFrame:
        """Per day: the measures, the rows and the rows with active users (one day per row, no gaps)."""
        frame = usage[["date", *MEASURES]].assign(rows=1.0, active_user_days=(usage["active_users"] > 0).astype(float))
        daily = frame.groupby("date").sum()
        days = pd.date_range(daily.index.min(), daily.index.max(), freq="D")
        return daily.reindex(days, fill_value=0.0) if len(daily) else daily

    def day_weights(self, account: str) -> pd.DataFrame:
        """Per day of the account's rows and measure: the rest of the base's measure per row (the
        breadth of features: per row with active users) that day, against the same over the 364
        days ending that day; with n < FULL_BASE other accounts reporting, only n / FULL_BASE of the way from 1."""
        if account not in self.weights:
            own = self._daily(self.rows("usage_daily", account)).reindex(self.base.index, fill_value=0.0)
            others = self.base - own
            level = others.rolling(LEVEL_DAYS, min_periods=1).sum()
            # plain lists, day by day: a DataFrame's scalar lookups made this loop most of the test's time
            others_of, level_of = others.to_dict("list"), level.to_dict("list")
            out = {}
            for measure in MEASURES:
                per = "active_user_days" if measure == "distinct_features_used" else "rows"
                weights = []
                for day in range(len(self.base.index)):
                    n, rate_level = others_of[per][day], _ratio(level_of[measure][day], level_of[per][day])
                    if n > 0 and rate_level > 0:
                        weight = 1 + min(n / FULL_BASE, 1) * (others_of[measure][day] / n / rate_level - 1)
                        weights.append(max(weight, MIN_WEIGHT))
                    else:
                        weights.append(1.0)
                out[measure] = weights
            self.weights[account] = pd.DataFrame(out, index=self.base.index)
        return self.weights[account]

    def usage(self, account: str, c: pd.Timestamp) -> dict:
        seats = float(self.t["accounts"].set_index("account_id").loc[account, "seats"])
        days = [r for r in self.rows("usage_daily", account).itertuples() if r.date + DAY <= c]
        weights = self.day_weights(account) if days else None

        def window(offset: int, length: int):
            return [r for r in days if c - (offset + length) * DAY <= r.date < c - offset * DAY]

        def level(rows, col: str) -> float:
            """The measure's sum over the sum of its days' weights (days with active users for the breadth)."""
            counted = [r for r in rows if col != "distinct_features_used" or r.active_users > 0]
            return _ratio(sum(getattr(r, col) for r in rows), sum(weights.at[r.date, col] for r in counted))

        def change(recent, before, col: str) -> float:
            return _ratio(level(recent, col), level(before, col)) - 1

        w7, w30, w90 = window(0, 7), window(0, 30), window(0, 90)
        before7, before30 = window(7, 90), window(30, 90)
        mean = lambda rows, col: _mean(getattr(r, col) for r in rows)  # noqa: E731
        out = {
            "active_users_7d": mean(w7, "active_users"),
            "active_users_change_7d": change(w7, before7, "active_users"),
            "logins_30d": float(sum(r.logins for r in w30)) if w30 else NAN,
            "logins_change_30d": change(w30, before30, "logins"),
            "session_minutes_per_user_30d": _ratio(
                sum(r.session_minutes for r in w30), sum(r.active_users for r in w30)
            ),
            "key_feature_events_per_user_30d": _ratio(
                sum(r.key_feature_events for r in w30), sum(r.active_users for r in w30)
            ),
            "key_feature_events_change_30d": change(w30, before30, "key_feature_events"),
            "api_calls_change_30d": change(w30, before30, "api_calls"),
        }
        login_days = [r.date for r in days if r.logins > 0]
        out["days_since_last_login"] = float((c - max(login_days)) / DAY) if login_days else NAN
        out["login_days_30d"] = float(sum(r.logins > 0 for r in w30)) if w30 else NAN
        interval = _ratio(len(w90), sum(r.logins > 0 for r in w90))
        out["login_interval_days_90d"] = interval
        out["login_interval_vs_healthy"] = interval / self.p.healthy_login_interval_days
        active = [r.date for r in days if r.active_users > 0 or r.api_calls > 0]
        if not days:
            out["zero_usage_streak_days"] = NAN
        elif active:
            out["zero_usage_streak_days"] = float((c - max(active)) / DAY) - 1
        else:
            out["zero_usage_streak_days"] = float((c - min(r.date for r in days)) / DAY)
        out["zero_usage_days_30d"] = (
            float(sum(not (r.active_users > 0 or r.api_calls > 0) for r in w30)) if w30 else NAN
        )

        def breadth(rows):
            return _ratio(sum(r.distinct_features_used for r in rows), sum(r.active_users > 0 for r in rows))

        out["distinct_features_30d"] = breadth(w30)
        out["distinct_features_change_30d"] = change(w30, before30, "distinct_features_used")
        out["seat_utilisation_30d"] = level(w30, "active_users") / seats
        y = np.array([r.active_users for r in w90], dtype=float)
        if len(w90) >= 14 and y.sum() > 0:
            # active users = weight x (a + b t): least squares on the weighted intercept and time
            f = np.array([weights.at[r.date, "active_users"] for r in w90])
            t = np.array([(r.date - c) / DAY for r in w90])
            (_, slope), *_ = np.linalg.lstsq(np.column_stack([f, f * t]), y, rcond=None)
            out["active_users_trend_90d"] = float(slope * 7 / level(w90, "active_users"))
        else:
            out["active_users_trend_90d"] = NAN
        return out

    # --- support, effort, communication --------------------------------------------------------
    def support(self, account: str, c: pd.Timestamp) -> dict:
        tickets = self.rows("tickets", account)
        tickets = tickets[tickets["created_at"] < c].sort_values(["created_at", "ticket_id"])
        in_days = lambda ts, d: c - d * DAY <= ts < c  # noqa: E731
        out = {
            "tickets_30d": float(sum(in_days(ts, 30) for ts in tickets["created_at"])),
            "tickets_90d": float(sum(in_days(ts, 90) for ts in tickets["created_at"])),
        }
        open_ages, awaiting, first_hours, breaches, resolutions = [], 0, [], 0, []
        reopens = transfers = 0
        ces, csat = [], []
        unanswered = 0
        target = pd.Timedelta(hours=self.p.response_target_hours)
        for ticket in tickets.itertuples():
            events = self.events_by_ticket.get(ticket.ticket_id, self.t["ticket_events"].iloc[0:0]).sort_values("at")
            before = events[events["at"] < c]
            is_open = True
            for e in before.itertuples():
                if e.kind == "resolved":
                    is_open = False
                elif e.kind == "reopened":
                    is_open = True
            if is_open:
                open_ages.append((c - ticket.created_at) / DAY)
            responses = events[events["kind"] == "first_response"]["at"]
            first = responses.min() if len(responses) else None
            if first is None or first >= c:
                awaiting += 1
            if first is not None and in_days(first, 90):
                first_hours.append((first - ticket.created_at) / pd.Timedelta(hours=1))
            due = ticket.created_at + target
            if (first is None or first > due) and in_days(due, 90):
                breaches += 1
            for e in before.itertuples():
                if e.kind == "resolved" and in_days(e.at, 90):
                    resolutions.append((e.at - ticket.created_at) / pd.Timedelta(hours=1))
                reopens += e.kind == "reopened" and in_days(e.at, 90)
                transfers += e.kind == "transferred" and in_days(e.at, 90)
                if e.kind == "ces" and in_days(e.at, 180):
                    ces.append(e.value)
            unanswered += self._unanswered(ticket.ticket_id, events, c)
        out["open_tickets"] = float(len(open_ages))
        out["open_ticket_age_days"] = _mean(open_ages)
        recent30 = tickets.loc[np.array([in_days(ts, 30) for ts in tickets["created_at"]], dtype=bool)]
        recent90 = tickets.loc[np.array([in_days(ts, 90) for ts in tickets["created_at"]], dtype=bool)]
        out["high_priority_tickets_30d"] = float(recent30["priority"].isin(["high", "urgent"]).sum())
        repeats = switches = 0
        previous = list(tickets.itertuples())
        for i, ticket in enumerate(previous):
            if not in_days(ticket.created_at, 90):
                continue
            earlier = previous[:i]
            window = pd.Timedelta(days=self.p.repeat_window_days)
            repeats += any(
                e.category == ticket.category and ticket.created_at - e.created_at <= window for e in earlier
            )
            switches += bool(earlier) and earlier[-1].channel != ticket.channel
        out["repeat_tickets_90d"] = float(repeats)
        out["same_issue_contacts_max_30d"] = float(recent30["category"].value_counts().max()) if len(recent30) else 0.0
        for cat in TICKET_CATEGORIES:
            out[f"tickets_{cat}_90d"] = float((recent90["category"] == cat).sum())
        out.update(
            {
                "awaiting_first_response": float(awaiting),
                "first_response_hours_90d": _mean(first_hours),
                "response_breaches_90d": float(breaches),
                "resolution_hours_90d": _mean(resolutions),
                "reopens_90d": float(reopens),
                "transfers_90d": float(transfers),
                "channel_switches_90d": float(switches),
                "ces_mean_180d": _mean(ces),
                "ces_answers_180d": float(len(ces)),
                "unanswered_agent_messages": float(unanswered),
            }
        )
        customer_times = []
        for ticket_id in self.rows("tickets", account)["ticket_id"]:
            msgs = self.messages_by_ticket.get(ticket_id)
            if msgs is not None:
                customer_times += [
                    m for m, a in zip(msgs["sent_at"], msgs["author"], strict=True) if a == "customer" and m < c
                ]
            events = self.events_by_ticket.get(ticket_id)
            if events is not None:
                csat += [(e.at, e.value) for e in events.itertuples() if e.kind == "csat" and e.at < c]
        out["customer_messages_30d"] = float(sum(in_days(m, 30) for m in customer_times))
        out["days_since_customer_message"] = float((c - max(customer_times)) / DAY) if customer_times else NAN
        csat.sort(key=lambda x: x[0])
        recent = [v for at, v in csat if in_days(at, 180)]
        out["csat_mean_180d"] = _mean(recent)
        out["csat_answers_180d"] = float(len(recent))
        out["csat_last"] = float(csat[-1][1]) if csat else NAN
        return out

    def _unanswered(self, ticket_id: str, events: pd.DataFrame, c: pd.Timestamp) -> int:
        msgs = self.messages_by_ticket.get(ticket_id)
        if msgs is None:
            return 0
        wait = pd.Timedelta(hours=self.p.unanswered_after_hours)
        # (time, kind) pairs as plain lists: the loops below read them once per agent message
        sent = sorted(zip(msgs["sent_at"], msgs["author"], strict=True), key=lambda x: x[0])
        states = sorted(
            (
                (at, kind)
                for at, kind in zip(events["at"], events["kind"], strict=True)
                if kind in ("resolved", "reopened")
            ),
            key=lambda x: x[0],
        )
        count = 0
        for at, author in sent:
            if author != "agent":
                continue
            before = [kind for when, kind in states if when <= at]
            if before and before[-1] == "resolved":
                continue  # written on a closed ticket
            replies = [when for when, who in sent if who == "customer" and when > at]
            closes = [when for when, kind in states if kind == "resolved" and when >= at]
            ends = [min(x) for x in (replies, closes) if x]
            end = min(ends) if ends else None
            start = at + wait
            if start < c and (end is None or end >= c) and (end is None or end > start):
                count += 1
        return count

    # --- surveys, risk events, business --------------------------------------------------------
    def surveys(self, account: str, c: pd.Timestamp) -> dict:
        s = self.rows("surveys", account)
        s = s[(s["kind"] == "nps") & (s["answered_at"] < c)].sort_values("answered_at")
        scores = [float(x) for x in s["score"]]
        last = scores[-1] if scores else NAN
        return {
            "nps_last": last,
            "nps_detractor": NAN if not scores else float(last <= 6),
            "nps_change": scores[-1] - scores[-2] if len(scores) >= 2 else NAN,
            "days_since_nps": float((c - s["answered_at"].iloc[-1]) / DAY) if scores else NAN,
            "nps_answers_365d": float((s["answered_at"] >= c - 365 * DAY).sum()),
        }

    def risk_events(self, account: str, c: pd.Timestamp) -> dict:
        e = self.rows("account_events", account)
        e = e[e["at"] < c]
        out = {}
        for kind in (
            "billing_dispute",
            "payment_failed",
            "security_incident",
            "legal_threat",
            "sponsor_left",
            "downgrade",
        ):
            rows = e[e["kind"] == kind]
            out[f"{kind}_180d"] = float((rows["at"] >= c - 180 * DAY).sum())
            out[f"days_since_{kind}"] = float((c - rows["at"].max()) / DAY) if len(rows) else NAN
        return out

    def arr_now(self, account: str, c: pd.Timestamp, since: pd.Timestamp | None = None) -> float:
        e = self.rows("account_events", account)
        e = e[e["kind"].isin(["upgrade", "downgrade"]) & (e["at"] < c) & e["value"].notna()]
        if since is not None:
            return float(e[e["at"] >= since]["value"].sum())
        base = float(self.t["accounts"].set_index("account_id").loc[account, "arr"])
        return base + float(e["value"].sum())

    def business(self, account: str, c: pd.Timestamp) -> dict:
        accounts = self.t["accounts"].set_index("account_id")
        row = accounts.loc[account]
        churn = self.t["churn"].set_index("account_id")["churned_at"]
        live = [
            a for a, r in accounts.iterrows() if r["contract_start"] < c and not (a in churn.index and churn[a] < c)
        ]
        if c not in self.averages:  # the same for every account at this cutoff
            self.averages[c] = _mean(self.arr_now(a, c) for a in live)
        average = self.averages[c]
        term = TERM_MONTHS[row["billing"]]
        anchor = row["contract_start"] if pd.isna(row["renewal_date"]) else row["renewal_date"]
        k = 0
        while (
            anchor + pd.DateOffset(months=(k - 1) * term) > row["contract_start"]
        ):  # walk back to the first renewal after the start
            k -= 1
        while (
            anchor + pd.DateOffset(months=k * term) < c
            or anchor + pd.DateOffset(months=k * term) <= row["contract_start"]
        ):
            k += 1
        renewal = anchor + pd.DateOffset(months=k * term)
        left = self.rows("account_events", account)
        left = left[(left["kind"] == "sponsor_left") & (left["at"] < c)]
        return {
            "arr_current": self.arr_now(account, c),
            "arr_vs_average": self.arr_now(account, c) / average,
            "arr_change_365d": self.arr_now(account, c, since=c - 365 * DAY),
            "seats": float(row["seats"]),
            "tenure_days": float((c - row["contract_start"]) / DAY),
            "days_to_renewal": float((renewal - c) / DAY),
            "exec_sponsor_present": float(bool(row["exec_sponsor"]) and left.empty),
            "segment": row["segment"],
            "billing": row["billing"],
            "plan": row["plan"],
            "industry": row["industry"],
            "region": row["region"],
        }
