"""Support tickets, their event-sourced lifecycle, and the conversations inside them.

Unhealthy accounts open more tickets, repeat the same issue, rephrase the same question, wait
longer, get transferred and reopened more, sound more frustrated as a ticket drags on, and say the
things that matter ("we will cancel", "get me a manager"). Satisfaction (CSAT) and effort (CES)
answers carry submission bias: mostly the very happy and the very unhappy answer.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from simulation import textbank as tb
from simulation.latent import LatentBlock
from simulation.observed import active_mask, sigmoid, to_timestamp
from simulation.render import fill, join, pick

CATEGORIES = np.array(
    ["technical", "bug", "how_to", "billing", "security", "legal", "feature_request", "account"], dtype=object
)
BASE_MIX = np.array([0.22, 0.17, 0.24, 0.08, 0.015, 0.015, 0.15, 0.09])
PRIORITY_BASE = {
    "technical": 0.5,
    "bug": 0.6,
    "how_to": -0.6,
    "billing": 0.3,
    "security": 1.6,
    "legal": 1.0,
    "feature_request": -1.0,
    "account": 0.0,
}
RESOLUTION_DAYS = {
    "technical": 1.5,
    "bug": 3.5,
    "how_to": 0.4,
    "billing": 1.5,
    "security": 2.5,
    "legal": 4.0,
    "feature_request": 6.0,
    "account": 1.0,
}
FIRST_RESPONSE_HOURS = {"urgent": 0.6, "high": 2.0, "normal": 6.0, "low": 14.0}
CRITICAL_KINDS = np.array(list(tb.CRITICAL_SENTENCES), dtype=object)
TONES = ("positive", "neutral", "negative", "angry")

# Flat phrase table: every (intent, phrasing) with offsets per intent, for vectorised lookups.
_INTENTS = [(cat, intent, phrases) for cat, intents in tb.INTENTS.items() for intent, phrases in intents.items()]
INTENT_NAMES = np.array([f"{cat}:{intent}" for cat, intent, _ in _INTENTS], dtype=object)
INTENT_CATEGORY = np.array([cat for cat, _, _ in _INTENTS], dtype=object)
INTENT_N_PHRASES = np.array([len(p) for _, _, p in _INTENTS])
INTENT_OFFSET = np.concatenate([[0], np.cumsum(INTENT_N_PHRASES)[:-1]])
PHRASES = np.array([p for _, _, phrases in _INTENTS for p in phrases], dtype=object)


@dataclass
class SupportTables:
    tickets: pd.DataFrame
    ticket_events: pd.DataFrame
    ticket_messages: pd.DataFrame
    truth: pd.DataFrame  # per ticket: intent, rephrasings, critical moments, true CSAT/CES
    message_truth: pd.DataFrame  # per message: the tone it was written in (positive/neutral/negative/angry, or agent)


def _decayed(impulse: np.ndarray, half_life_days: float) -> np.ndarray:
    """Exponentially decayed sum of daily impulses, per account (recursion over days)."""
    decay = 0.5 ** (1 / half_life_days)
    out = np.zeros_like(impulse, dtype=np.float32)
    level = np.zeros(impulse.shape[0], dtype=np.float32)
    for t in range(impulse.shape[1]):
        level = level * decay + impulse[:, t]
        out[:, t] = level
    return out


def _tone(score: np.ndarray) -> np.ndarray:
    return np.where(
        score > 1.2, "positive", np.where(score > -0.2, "neutral", np.where(score > -1.2, "negative", "angry"))
    ).astype(object)


def _tone_sentence(rng: np.random.Generator, tone: np.ndarray) -> np.ndarray:
    out = np.empty(len(tone), dtype=object)
    for name in TONES:
        rows = tone == name
        out[rows] = pick(rng, tb.TONE_SENTENCES[name], int(rows.sum()))
    return out


def _critical(
    rng: np.random.Generator, h: np.ndarray, step: np.ndarray, billing: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Critical-moment sentences (and their kind, '' if none) for customer messages."""
    n = len(h)
    fires = rng.random(n) < sigmoid(-5.6 - 1.7 * h + 0.4 * step)
    weights = np.where(billing[:, None], [0.3, 0.2, 0.15, 0.05, 0.3], [0.4, 0.25, 0.2, 0.1, 0.05])
    kind_idx = (rng.random(n)[:, None] > np.cumsum(weights, axis=1)).sum(axis=1).clip(0, len(CRITICAL_KINDS) - 1)
    kind = np.where(fires, CRITICAL_KINDS[kind_idx], "").astype(object)
    sentence = np.full(n, "", dtype=object)
    for name in CRITICAL_KINDS:
        rows = kind == name
        sentence[rows] = pick(rng, tb.CRITICAL_SENTENCES[name], int(rows.sum()))
    negated = (~fires) & (h > 0.3) & (rng.random(n) < 0.02)
    sentence[negated] = pick(rng, tb.NEGATED_CRITICAL, int(negated.sum()))
    return sentence, kind


def _typos(rng: np.random.Generator, text: np.ndarray, rate: float) -> np.ndarray:
    """Swap two adjacent letters in a share of messages (people type fast when annoyed)."""
    text = text.copy()
    rows = np.flatnonzero(rng.random(len(text)) < rate)
    cuts = rng.random(len(rows))
    for row, cut in zip(rows, cuts, strict=True):  # a small sample of messages only
        s = text[row]
        if len(s) > 12:
            i = 1 + int(cut * (len(s) - 3))
            text[row] = s[:i] + s[i + 1] + s[i] + s[i + 2 :]
    return text


def make_support(
    rng: np.random.Generator,
    latent: LatentBlock,
    traits: pd.DataFrame,
    seats: np.ndarray,
    account_id: np.ndarray,
    window_start: dt.date,
    day_factor: np.ndarray,
    ticket_offset: int,
    message_offset: int,
) -> SupportTables:
    mask = active_mask(latent)
    n, n_days = mask.shape
    h_all = np.nan_to_num(latent.health, nan=0.0)
    shocks = latent.shocks
    impulse = np.zeros((n, n_days), dtype=np.float32)
    inc = shocks[shocks["kind"] == "product_incident"]
    np.add.at(impulse, (inc["acc"].to_numpy(), inc["day"].to_numpy()), 1.0)
    incident = _decayed(impulse, 4.0)
    tenure = np.arange(n_days)[None, :] - traits["start_day"].to_numpy()[:, None]
    onboarding = (tenure >= 0) & (tenure < 90)
    failed = traits["failed_onboarding"].to_numpy()[:, None] & (tenure >= 0) & (tenure < 150)

    rate = (
        0.022
        * np.sqrt(seats / 10 + 0.5)[:, None]
        * traits["ticket_propensity"].to_numpy()[:, None]
        * np.exp(-0.45 * h_all)
        * (1 + 2.5 * incident)
        * (1 + 0.5 * onboarding + 1.5 * failed)
        * np.maximum(day_factor, 0.3)[None, :]
    )
    counts = rng.poisson(np.where(mask, rate, 0.0))
    acc, day = np.nonzero(counts)
    reps = counts[acc, day]
    acc, day = np.repeat(acc, reps), np.repeat(day, reps)
    forced_kind = np.full(len(acc), "", dtype=object)
    forced = shocks[shocks["kind"].isin(["billing_dispute", "security_incident"])]
    forced = forced[mask[forced["acc"].to_numpy(), forced["day"].to_numpy()]] if len(forced) else forced
    acc = np.concatenate([acc, forced["acc"].to_numpy()]).astype(np.int64)
    day = np.concatenate([day, forced["day"].to_numpy()]).astype(np.int64)
    forced_kind = np.concatenate([forced_kind, forced["kind"].to_numpy(dtype=object)])
    second = np.clip(rng.normal(14 * 3600, 3 * 3600, len(acc)), 0, 86_399)
    order = np.lexsort((second, day, acc))
    acc, day, second, forced_kind = acc[order], day[order], second[order], forced_kind[order]
    m = len(acc)
    h = h_all[acc, day].astype(np.float64)

    # category mix moves with health, incidents and onboarding
    weights = np.tile(BASE_MIX, (m, 1))
    weights[:, 0:2] *= (1 + 3.0 * incident[acc, day])[:, None]
    weights[:, 2] *= 1 + 2.0 * onboarding[acc, day] + 2.0 * failed[acc, day]
    weights[:, 5] *= 1 + 4.0 * np.maximum(0, -h - 1.0)
    weights[:, 6] *= 1 + 0.6 * np.maximum(0, h)
    weights[:, 7] *= 1 + 2.0 * np.maximum(0, -h - 0.3)
    weights /= weights.sum(axis=1, keepdims=True)
    cat_idx = (rng.random(m)[:, None] > np.cumsum(weights, axis=1)).sum(axis=1).clip(0, len(CATEGORIES) - 1)
    category = CATEGORIES[cat_idx]
    category[forced_kind == "billing_dispute"] = "billing"
    category[forced_kind == "security_incident"] = "security"

    # intent within the category; unhappy accounts ask about cancelling
    intent = np.empty(m, dtype=object)
    for cat in np.unique(category):
        rows = np.flatnonzero(category == cat)
        options = np.flatnonzero(INTENT_CATEGORY == cat)
        intent[rows] = options[rng.integers(0, len(options), len(rows))]
    cancel = np.flatnonzero(INTENT_NAMES == "account:cancel_account")[0]
    acct_rows = np.flatnonzero(category == "account")
    wants_out = rng.random(len(acct_rows)) < sigmoid(-1.2 - 1.6 * h[acct_rows])
    intent[acct_rows[wants_out]] = cancel
    dispute = np.flatnonzero(INTENT_NAMES == "billing:double_charge")[0]
    intent[forced_kind == "billing_dispute"] = dispute

    # the same issue comes back: copy the previous ticket's intent (chains when it keeps coming)
    prev_same = np.r_[False, acc[1:] == acc[:-1]] & np.r_[False, (day[1:] - day[:-1]) <= 45]
    repeat = prev_same & (rng.random(m) < sigmoid(-1.6 - 0.9 * h)) & (forced_kind == "")
    intent = pd.Series(np.where(repeat, np.nan, intent.astype(float))).groupby(acc).ffill().to_numpy().astype(np.int64)
    category = INTENT_CATEGORY[intent]

    priority_score = np.array([PRIORITY_BASE[c] for c in category]) + 0.5 * np.maximum(0, -h) + rng.normal(0, 0.7, m)
    priority = np.where(
        priority_score > 1.6,
        "urgent",
        np.where(priority_score > 0.6, "high", np.where(priority_score > -0.6, "normal", "low")),
    ).astype(object)
    preferred = traits["preferred_channel"].to_numpy()[acc]
    channel = np.where(rng.random(m) < 0.7 - 0.15 * np.maximum(0, -h), preferred, tb_channels(rng, m))
    channel = np.where((h < -1.0) & (rng.random(m) < 0.25), "phone", channel).astype(object)

    created = to_timestamp(window_start, day, second)
    ticket_ids = np.array([f"T{i:08d}" for i in range(ticket_offset + 1, ticket_offset + m + 1)], dtype=object)
    tickets = pd.DataFrame(
        {
            "ticket_id": ticket_ids,
            "account_id": account_id[acc],
            "created_at": created,
            "priority": pd.Series(priority, dtype="str"),
            "category": pd.Series(category, dtype="str"),
            "channel": pd.Series(channel, dtype="str"),
        }
    ).astype({"ticket_id": "str", "account_id": "str"})

    # --- lifecycle (hours after creation) ---
    load = traits["support_load"].to_numpy()[acc]
    fr = np.exp(np.log(np.array([FIRST_RESPONSE_HOURS[p] for p in priority])) + rng.normal(0, 0.8, m)) * load
    resolution = (
        np.exp(np.log(np.array([RESOLUTION_DAYS[c] for c in category])) + rng.normal(0, 0.7, m) - 0.25 * h) * 24
    )
    stalled = rng.random(m) < sigmoid(-2.6 - 0.7 * h)
    resolve = fr + np.where(stalled, 7 * 24 + rng.uniform(0, 24, m), resolution)
    transferred = rng.random(m) < sigmoid(-2.3 - 0.6 * h + 0.8 * np.isin(category, ["security", "legal", "billing"]))
    transfer_at = fr + rng.uniform(0.2, 0.8, m) * (resolve - fr)
    reopened = (~stalled) & (rng.random(m) < sigmoid(-2.4 - 0.8 * h))
    reopen_at = resolve + rng.uniform(8, 96, m)
    resolve2 = reopen_at + np.exp(np.log(24) + rng.normal(0, 0.6, m))
    final = np.where(reopened, resolve2, resolve)
    followups = np.where(stalled, 0, rng.poisson(0.5 + 0.8 * np.maximum(0, -h) + 0.3 * (category == "bug")))
    rephrases = (rng.random(m) < sigmoid(-0.4 - 1.3 * h)) & (followups > 0)

    switched = channel != preferred
    satisfaction = (
        0.8 * h
        - 0.4 * transferred
        - 0.6 * reopened
        - 0.15 * np.log1p(fr)
        - 0.25 * followups
        - 0.5 * stalled
        + rng.normal(0, 0.7, m)
    )
    csat = np.clip(np.round(4.2 + 1.1 * satisfaction), 1, 5)
    effort = (
        0.5 * transferred
        + 0.8 * reopened
        + 0.35 * followups
        + 0.25 * np.log1p(fr)
        + 0.4 * switched
        - 0.3 * h
        + rng.normal(0, 0.6, m)
    )
    ces = np.clip(np.round(1.6 + 1.3 * effort), 1, 7)
    csat_answered = (~stalled) & (rng.random(m) < 0.06 + 0.34 * (np.abs(csat - 3) / 2) ** 1.5)
    ces_answered = (~stalled) & (rng.random(m) < 0.05 + 0.30 * (np.abs(ces - 4) / 3) ** 1.5)

    def events(kind: str, rows: np.ndarray, hours: np.ndarray, value: np.ndarray | None = None) -> pd.DataFrame:
        return pd.DataFrame(
            {"t": rows, "hours": hours[rows], "kind": kind, "value": np.nan if value is None else value[rows]}
        )

    all_rows = np.arange(m)
    ev = pd.concat(
        [
            events("first_response", all_rows, fr),
            events("transferred", np.flatnonzero(transferred), transfer_at),
            events("resolved", all_rows, resolve),
            events("reopened", np.flatnonzero(reopened), reopen_at),
            events("resolved", np.flatnonzero(reopened), resolve2),
            events("csat", np.flatnonzero(csat_answered), final + rng.uniform(1, 48, m), csat),
            events("ces", np.flatnonzero(ces_answered), final + rng.uniform(1, 48, m), ces),
        ],
        ignore_index=True,
    )
    ev_at = _after(created, ev["t"].to_numpy(), ev["hours"].to_numpy())
    window_end = pd.Timestamp(window_start, tz="UTC") + pd.Timedelta(days=n_days)
    keep = (ev_at < window_end).to_numpy()
    ticket_events = pd.DataFrame(
        {
            "ticket_id": ticket_ids[ev["t"].to_numpy()],
            "at": ev_at,
            "kind": ev["kind"].to_numpy(dtype=object),
            "value": ev["value"].to_numpy(),
        }
    )[keep].astype({"ticket_id": "str", "kind": "str"})
    ticket_events = ticket_events.sort_values(["ticket_id", "at"], kind="stable").reset_index(drop=True)

    messages, crit_count = _conversations(
        rng,
        acc=acc,
        h=h,
        intent=intent,
        category=category,
        traits=traits,
        created=created,
        fr=fr,
        resolve=resolve,
        transfer_at=transfer_at,
        transferred=transferred,
        reopened=reopened,
        reopen_at=reopen_at,
        resolve2=resolve2,
        stalled=stalled,
        followups=followups,
        rephrases=rephrases,
        failed=failed[acc, day],
    )
    messages = messages[(messages["sent_at"] < window_end).to_numpy()]
    messages = messages.sort_values(["t", "sent_at"], kind="stable").reset_index(drop=True)
    messages.insert(
        0, "message_id", [f"M{i:09d}" for i in range(message_offset + 1, message_offset + len(messages) + 1)]
    )
    messages["ticket_id"] = ticket_ids[messages.pop("t").to_numpy()]
    message_truth = pd.DataFrame({"message_id": messages["message_id"], "tone": messages["tone"]}).astype("str")
    messages = messages[["message_id", "ticket_id", "sent_at", "author", "body"]].astype(
        {"message_id": "str", "ticket_id": "str", "author": "str", "body": "str"}
    )
    truth = pd.DataFrame(
        {
            "ticket_id": ticket_ids,
            "intent": INTENT_NAMES[intent],
            "repeat_of_previous": repeat,
            "rephrasings": np.where(rephrases, followups, 0) + reopened.astype(np.int64),
            "critical_moments": crit_count,
            "stalled": stalled,
            "true_csat": csat,
            "true_ces": ces,
        }
    ).astype({"ticket_id": "str", "intent": "str"})
    return SupportTables(tickets, ticket_events, messages, truth, message_truth)


def tb_channels(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.array(["email", "chat", "web", "phone"], dtype=object)[rng.integers(0, 4, n)]


def _after(created: pd.Series, rows: np.ndarray, hours: np.ndarray) -> pd.Series:
    base = created.dt.tz_convert(None).to_numpy()[rows]
    stamp = base + (np.asarray(hours) * 3.6e9).astype("timedelta64[us]")
    return pd.Series(pd.DatetimeIndex(stamp).tz_localize("UTC"), dtype="datetime64[us, UTC]")


def _conversations(
    rng,
    *,
    acc,
    h,
    intent,
    category,
    traits,
    created,
    fr,
    resolve,
    transfer_at,
    transferred,
    reopened,
    reopen_at,
    resolve2,
    stalled,
    followups,
    rephrases,
    failed,
):
    """Messages of every ticket: opening, agent replies, follow-ups, rephrasings, transfers, closure."""
    m = len(acc)
    first = traits["contact_first"].to_numpy()[acc]
    email = traits["contact_email"].to_numpy()[acc]
    phone = (
        "+1 "
        + rng.integers(201, 989, m).astype(str).astype(object)
        + "-555-"
        + np.char.zfill(rng.integers(0, 10_000, m).astype(str), 4).astype(object)
    )
    card = np.asarray(["4111 1111 1111 1111", "5500 0000 0000 0004", "4012 8888 8888 1881"], dtype=object)[
        rng.integers(0, 3, m)
    ]
    slots = {
        "name": first,
        "agent": pick(rng, tb.AGENTS, m),
        "product": pick(rng, tb.PRODUCTS, m),
        "error": pick(rng, tb.ERROR_CODES, m),
        "version": pick(rng, tb.VERSIONS, m),
        "region": np.where(rng.random(m) < 0.8, traits["cloud_region"].to_numpy()[acc], pick(rng, tb.REGIONS, m)),
        "day": pick(rng, tb.WEEKDAYS, m),
        "workaround": pick(rng, tb.WORKAROUNDS, m),
        "email": email,
        "phone": phone,
        "card": card,
    }
    variant0 = rng.integers(0, 10, m)
    billing = category == "billing"
    parts: list[pd.DataFrame] = []
    crit_count = np.zeros(m, dtype=np.int64)

    def customer(
        rows: np.ndarray, step: np.ndarray, hours: np.ndarray, *, opening: bool, rephrase: np.ndarray, reopen: bool
    ) -> None:
        k = len(rows)
        if k == 0:
            return
        sub = {key: value[rows] for key, value in slots.items()}
        phrase_idx = INTENT_OFFSET[intent[rows]] + (variant0[rows] + step) % INTENT_N_PHRASES[intent[rows]]
        question = fill(PHRASES[phrase_idx], sub)
        # frustration builds up within a ticket: every unanswered follow-up and a reopen sour the tone
        tone = _tone(0.8 + h[rows] + rng.normal(0, 0.6, k) - 0.35 * step - 0.5 * reopen)
        crit, kind = _critical(rng, h[rows], step + reopen, billing[rows])
        np.add.at(crit_count, rows, kind != "")
        if opening:
            contact = np.where(rng.random(k) < 0.2, fill(pick(rng, tb.CONTACT_LINES, k), sub), "").astype(object)
            card_line = np.where(
                billing[rows] & (rng.random(k) < 0.08),
                fill(np.full(k, "The card {card} was charged.", dtype=object), sub),
                "",
            ).astype(object)
            signoff = join(pick(rng, tb.SIGNOFFS, k), np.where(rng.random(k) < 0.6, first[rows], "").astype(object))
            body = join(
                pick(rng, tb.GREETINGS, k), question, card_line, _tone_sentence(rng, tone), crit, contact, signoff
            )
        else:
            lead = np.where(rephrase, pick(rng, tb.REPHRASE_OPENERS, k), pick(rng, tb.CUSTOMER_STILL_BROKEN, k)).astype(
                object
            )
            body = join(lead, np.where(rephrase, question, "").astype(object), _tone_sentence(rng, tone), crit)
        body = _typos(rng, body, 0.1)
        parts.append(pd.DataFrame({"t": rows, "hours": hours, "author": "customer", "body": body, "tone": tone}))

    def agent(rows: np.ndarray, hours: np.ndarray, bank: tuple[str, ...], extra: np.ndarray | None = None) -> None:
        if len(rows) == 0:
            return
        sub = {key: value[rows] for key, value in slots.items()}
        body = fill(pick(rng, bank, len(rows)), sub)
        if extra is not None:
            body = join(body, extra)
        parts.append(pd.DataFrame({"t": rows, "hours": hours, "author": "agent", "body": body, "tone": "agent"}))

    everyone = np.arange(m)
    customer(
        everyone, np.zeros(m, dtype=np.int64), np.zeros(m), opening=True, rephrase=np.zeros(m, dtype=bool), reopen=False
    )
    # first response, sometimes with a workaround for a core feature (more often right after a failed onboarding)
    sub = {key: value for key, value in slots.items()}
    offers = (np.isin(category, ["technical", "bug"]) & (rng.random(m) < 0.2)) | (failed & (rng.random(m) < 0.6))
    workaround = np.where(offers, fill(pick(rng, tb.AGENT_WORKAROUND, m), sub), "").astype(object)
    agent(everyone, fr, tb.AGENT_FIRST, workaround)
    # customer follow-ups between first response and resolution, each answered by the agent
    t = np.repeat(everyone, followups)
    step = np.arange(len(t)) - np.repeat(np.cumsum(followups) - followups, followups) + 1  # 1..k within each ticket
    span = resolve[t] - fr[t]
    at = fr[t] + span * step / (followups[t] + 1)
    customer(t, step, at, opening=False, rephrase=rephrases[t], reopen=False)
    promise = np.where(
        rng.random(len(t)) < 0.3, fill(pick(rng, tb.AGENT_PROMISE, len(t)), {k: v[t] for k, v in slots.items()}), ""
    ).astype(object)
    agent(t, np.minimum(at + rng.uniform(0.5, 6, len(t)), resolve[t] - 0.1), tb.AGENT_FOLLOWUP, promise)
    rows = np.flatnonzero(transferred)
    agent(rows, transfer_at[rows], tb.AGENT_TRANSFER)
    rows = np.flatnonzero(stalled)  # the customer stops replying: check-ins go unanswered
    agent(rows, fr[rows] + 48, tb.AGENT_CHECK_IN)
    agent(rows, fr[rows] + 120, tb.AGENT_CHECK_IN)
    agent(everyone, resolve, tb.AGENT_RESOLVED)
    rows = np.flatnonzero(reopened)
    customer(
        rows, followups[rows] + 1, reopen_at[rows], opening=False, rephrase=np.ones(len(rows), dtype=bool), reopen=True
    )
    agent(rows, resolve2[rows], tb.AGENT_RESOLVED)
    final = np.where(reopened, resolve2, resolve)
    rows = np.flatnonzero(~stalled & (rng.random(m) < sigmoid(0.3 + 1.2 * h)))
    parts.append(
        pd.DataFrame(
            {
                "t": rows,
                "hours": final[rows] + rng.uniform(0.2, 12, len(rows)),
                "author": "customer",
                "body": pick(rng, tb.CUSTOMER_THANKS, len(rows)),
                "tone": "positive",
            }
        )
    )

    frame = pd.concat(parts, ignore_index=True)
    frame["sent_at"] = _after(created, frame["t"].to_numpy(), frame["hours"].to_numpy())
    return frame.drop(columns="hours"), crit_count
