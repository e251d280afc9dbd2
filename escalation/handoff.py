"""The handoff ("context package", DOMAIN.md): what support hands to Customer Success when a ticket
escalates, so the CS owner starts with the whole story instead of a meeting, and the customer
never has to repeat it.

A pure function of the decision and its inputs: no I/O, no clock (`now` is passed in), no
randomness, so the same inputs always give the same package and it can be replayed in an audit.
Every piece of quoted text (messages, the ticket subject, reasons) goes through `mask_pii` before
it is cut into excerpts, so an excerpt can never keep half of a card number.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass

import pandas as pd

from escalation.decision import AccountFacts, Decision, RiskView, TicketSignals
from features.text.critical import detect_critical

# --------------------------------------------------------------------------------------------
# Personal data
# --------------------------------------------------------------------------------------------

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")

# A maximal run of digits joined by single spaces or dashes. Runs are split into card-shaped
# pieces by `_mask_card_run`, because a card may sit right after a date or a code
# ("2024-03-15 4111 1111 1111 1111") and a regex alone cannot backtrack past a rejected run.
_DIGIT_RUN = re.compile(r"(?<![\w+.])[0-9]+(?:[ -][0-9]+)*")
_CARD_GROUPINGS = {(4, 4, 4, 4), (4, 4, 4, 4, 3), (4, 6, 5), (4, 6, 4)}

_PHONE = re.compile(
    r"(?<![\w+./-])(?:"
    r"\+[0-9]{1,3}[ .-]?(?:\([0-9]{1,4}\)[ .-]?)?[0-9]{1,4}(?:[ .-]?[0-9]{2,4}){1,4}"  # +44 20 7946 0958, +1 (415) 555-2671, +4915112345678
    r"|\([0-9]{3}\)[ .-]?[0-9]{3}[ .-][0-9]{4}"  # (555) 123-4567
    r"|[0-9]{3}([.-])[0-9]{3}\1[0-9]{4}"  # 555-123-4567, 555.123.4567
    r"|[0-9]{3} [0-9]{3} [0-9]{4}"  # 555 123 4567
    r"|0[0-9]{2,4}[ -]?[0-9]{3,4}[ -]?[0-9]{3,4}"  # UK national: 07700 900123, 020 7946 0958, 01632960001
    r")(?![\w])"
)
# a bare number right after a phone word ("call me on 5551234567", "mobile: 415 5552671")
_CUED_PHONE = re.compile(r"(?i)(\b(?:call|phone|tel|telephone|mobile|cell|whatsapp|sms|text me|reach me)\b[^0-9\n\[]{0,15})"
                         r"([0-9][0-9 .()-]{5,}[0-9])(?![\w])")
_DATE_SHAPED = re.compile(r"[0-9]{4}[-./][0-9]{1,2}[-./][0-9]{1,2}|[0-9]{1,2}[-./][0-9]{1,2}[-./][0-9]{2,4}")


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _mask_card_run(match: re.Match) -> str:
    """Mask the card-shaped pieces of a run of digit groups: 13-19 digits that pass Luhn, or that
    are grouped like a card (4-4-4-4); the best-looking pieces win, the rest of the run stays."""
    run = match.group(0)
    if sum(ch.isdigit() for ch in run) < 13:
        return run
    parts = re.split(r"([ -])", run)
    groups, seps = parts[0::2], parts[1::2]
    candidates = []
    for i in range(len(groups)):
        n = 0
        for j in range(i, len(groups)):
            n += len(groups[j])
            if n > 19:
                break
            if n < 13:
                continue
            digits = "".join(groups[i:j + 1])
            shaped = tuple(len(g) for g in groups[i:j + 1]) in _CARD_GROUPINGS
            luhn = _luhn_ok(digits)
            if luhn or shaped:
                candidates.append((-(luhn and (shaped or i == j)), -luhn, -shaped, -n, i, j))
    taken: list[list] = []  # [tier, first group, last group]
    for *tier, _, i, j in sorted(candidates):
        overlapping = [t for t in taken if not (j < t[1] or i > t[2])]
        if not overlapping:
            taken.append([tier, i, j])
        elif len(overlapping) == 1 and overlapping[0][0] == tier:
            # as likely a card as the piece already taken: mask both rather than guess
            overlapping[0][1], overlapping[0][2] = min(i, overlapping[0][1]), max(j, overlapping[0][2])
    if not taken:
        return run
    spans: list[list[int]] = []  # widened pieces may now touch each other: coalesce them
    for _, i, j in sorted(taken, key=lambda t: t[1]):
        if spans and i <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], j)
        else:
            spans.append([i, j])
    starts = {i: j for i, j in spans}
    out, g = [], 0
    while g < len(groups):
        sep = seps[starts.get(g, g)] if starts.get(g, g) < len(seps) else ""
        out.append(("[card]" if g in starts else groups[g]) + sep)
        g = starts.get(g, g) + 1
    return "".join(out)


def _mask_phone(match: re.Match) -> str:
    """A leading '+' and country code is a phone even when a neighbouring number got swallowed."""
    text = match.group(0)
    digits = sum(ch.isdigit() for ch in text)
    return "[phone]" if digits >= 7 and (digits <= 15 or text.startswith("+")) else text


def _mask_cued_phone(match: re.Match) -> str:
    number = match.group(2)
    digits = sum(ch.isdigit() for ch in number)
    if not 7 <= digits <= 15 or _DATE_SHAPED.fullmatch(number.strip()):
        return match.group(0)
    return match.group(1) + "[phone]"


#: applied in this order: emails first (their digits are not phones), then cards (a card's groups
#: would otherwise look like phone numbers), then phones
_MASKS: tuple[tuple[re.Pattern, object], ...] = (
    (_EMAIL, "[email]"),
    (_DIGIT_RUN, _mask_card_run),
    (_PHONE, _mask_phone),
    (_CUED_PHONE, _mask_cued_phone),
)


def mask_pii(text: str) -> str:
    """Emails -> [email], card numbers -> [card], phone numbers -> [phone]; versions, error codes,
    dates, ids and amounts stay, because CS needs them."""
    if not isinstance(text, str):
        return text
    for pattern, repl in _MASKS:
        text = pattern.sub(repl, text)
    return text


def mask_series(texts: pd.Series) -> pd.Series:
    """`mask_pii` over a whole column with pandas string methods (same patterns, same order)."""
    out = pd.Series(texts, dtype="str")
    for pattern, repl in _MASKS:
        out = out.str.replace(pattern, repl, regex=True)
    return out


# --------------------------------------------------------------------------------------------
# Technical specifics
# --------------------------------------------------------------------------------------------

_HTTP_REASONS = "bad gateway|service unavailable|internal server error|gateway time-?out|too many requests|not found|forbidden|unauthori[sz]ed|bad request"
_ERROR_PATTERNS = (
    (re.compile(r"\b(?:ERR(?:OR)?|ORA|SQL|EC|E)[-_]?[0-9]{2,6}\b"), lambda m: m.group(0)),
    (re.compile(r"\b0x[0-9A-Fa-f]{4,16}\b"), lambda m: m.group(0)),
    (re.compile(r"\b(?:ECONNRESET|ECONNREFUSED|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND|EACCES|EPIPE)\b"), lambda m: m.group(0)),
    (re.compile(r"(?i)\bHTTP(?:/[0-9](?:\.[0-9])?)?[ :]*([45][0-9]{2})\b"), lambda m: f"HTTP {m.group(1)}"),
    (re.compile(rf"(?i)\b([45][0-9]{{2}})(?: (?:{_HTTP_REASONS}|errors?|responses?|status)\b)"), lambda m: f"HTTP {m.group(1)}"),
    (re.compile(r"(?i)\b(error code|status code|error|status|code)[ :#]*([0-9]{3,5})\b"), lambda m: _error_number(m.group(1), m.group(2))),
)


def _error_number(keyword: str, number: str) -> str | None:
    """'error 429' is an HTTP status; 'error 5021' is the product's own code; 'status 200' is no error."""
    if re.fullmatch(r"[45][0-9]{2}", number):
        return f"HTTP {number}"
    return f"error {number}" if "status" not in keyword.lower() else None


_PRODUCTS = r"iOS|Android|Chrome|Firefox|Safari|Edge|Windows|macOS|Python|Node(?:\.js)?|Java|PostgreSQL|MySQL|Kubernetes"
_VERSION_PATTERNS = (
    (re.compile(r"\b[vV][0-9]+(?:\.[0-9]+)*\b"), lambda m: "v" + m.group(0)[1:]),
    (re.compile(rf"\b(?:{_PRODUCTS}) [0-9]+(?:\.[0-9]+)*\b"), lambda m: m.group(0)),
    (re.compile(r"(?i)\b(?:version|release|ver\.?)[ :]*[vV]?([0-9]+(?:\.[0-9]+)*)\b"), lambda m: m.group(1)),
    # three-part numbers, but neither dates (15.03.2024) nor IP addresses (four parts)
    (re.compile(r"(?<![\w.])(?![0-9]{1,2}\.[0-9]{1,2}\.[0-9]{4}\b)[0-9]+\.[0-9]+\.[0-9]+(?!\.?[0-9])"), lambda m: m.group(0)),
)
_AREAS = "EU|US|UK|EMEA|APAC|LATAM|AMER|ANZ|DACH|Nordics"
_NOT_PLACES = (r"(?:Our|The|Your|This|That|Which|Same|Each|Every|Any|Another|Default|Primary|Secondary|One|Other|What|Whichever"
               r"|My|Their|Its|A|In|On|At|From|To)\b")
_DIRECTIONS = "east|west|north|south|central|northeast|southeast|northwest|southwest"
_REGION_PATTERNS = (
    (re.compile(rf"(?i)\b(?:us|eu|ap|sa|ca|me|af|il|mx|us-gov)-(?:{_DIRECTIONS})-[0-9]\b"), lambda m: m.group(0).lower()),  # AWS
    (re.compile(rf"(?i)\b(?:us|europe|asia|australia|northamerica|southamerica|me|africa)-(?:{_DIRECTIONS})[0-9]\b"), lambda m: m.group(0).lower()),  # GCP
    # market areas in capitals, but not inside shouting ("PLEASE HELP US NOW")
    (re.compile(rf"(?<![A-Z] )(?<![A-Z]-)\b(?:{_AREAS})\b(?! [A-Z]{{2}})(?!-[A-Z])"), lambda m: m.group(0)),
    (re.compile(rf"\b(?:(?!{_NOT_PLACES})[A-Z][a-z]+ )?(?!{_NOT_PLACES})[A-Z][a-z]+ (?:region|data ?cent(?:er|re)|datacenter|DC)\b"),
     lambda m: m.group(0)),
)


def _find_all(texts: list[str], patterns) -> list[str]:
    """Values in order of first appearance (message, then position); deduplicated on a key that
    ignores case and a leading 'v', so 'v2.3' and 'version 2.3' are one version."""
    found = []
    for t, text in enumerate(texts):
        for pattern, render in patterns:
            for m in pattern.finditer(text or ""):
                value = render(m)
                if value:
                    found.append((t, m.start(), value))
    seen, out = set(), []
    for *_, value in sorted(found, key=lambda f: (f[0], f[1])):
        key = value.lower().removeprefix("v")
        if key not in seen:
            seen.add(key)
            out.append(value)
    return out


def extract_specifics(texts: list[str]) -> dict:
    """Error codes, versions and regions named in the messages, so engineering can start without
    reading the thread."""
    texts = [t if isinstance(t, str) else "" for t in texts]
    return {"error_codes": _find_all(texts, _ERROR_PATTERNS), "versions": _find_all(texts, _VERSION_PATTERNS),
            "regions": _find_all(texts, _REGION_PATTERNS)}


# --------------------------------------------------------------------------------------------
# What was tried, what was promised
# --------------------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[A-Z0-9])|\n+")
_FIRST_PERSON = r"\b(?:we|i|we've|i've|we have|i have|our (?:\w+ )?(?:team|engineers?|developers?))\b"
_TRIED_VERBS = (r"tried|restarted|rebooted|cleared|reinstalled|rolled back|reverted|reset|re-?synced|re-?ran|re-?started|re-?processed"
                r"|re-?generated|regenerated|refreshed|rotated|flushed|re-?deployed|patched|re-?applied|applied|checked|verified"
                r"|tested|reproduced|escalated|disabled|re-?enabled|enabled|asked you to|asked|had you|suggested|switched")
_TRIED = re.compile(rf"(?i){_FIRST_PERSON}[^.!?]*?\b(?:{_TRIED_VERBS})\b")
_FUTURE = re.compile(r"(?i)\b(?:we will|we'll|i will|i'll|we are going to|we're going to|i am going to|i'm going to|we shall"
                     r"|you will (?:receive|get|have|hear)|you'll (?:receive|get|have|hear))\b")
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november", "december")
_WEEKDAY = r"(?:mon|tues?|wed(?:nes)?|thu(?:rs?)?|fri|sat(?:ur)?|sun)(?:day)?"
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*"
_TZ = r"(?:UTC|GMT|CET|CEST|BST|EST|EDT|PST|PDT|IST|AEST)"
_WHEN = (rf"(?:(?:this |next )?{_WEEKDAY}(?: (?:morning|afternoon|evening|noon|eod))?|end of (?:the )?(?:day|week|business|month)|eod|eow|cob"
         rf"|tomorrow(?: morning| afternoon| evening)?|tonight|today|this (?:afternoon|evening|week)|noon|midnight"
         rf"|[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}|{_MONTH} [0-9]{{1,2}}(?:st|nd|rd|th)?|[0-9]{{1,2}}(?:st|nd|rd|th)? (?:of )?{_MONTH}"
         rf"|[0-9]{{1,2}}(?::[0-9]{{2}})? ?(?:am|pm)(?: {_TZ})?|[0-9]{{1,2}}:[0-9]{{2}}(?: {_TZ})?)")
_DEADLINE = re.compile(rf"(?i)\b(?:(?:by|before|no later than|until|on) {_WHEN}|within [0-9]+ (?:business |working )?(?:minutes?|hours?|days?)"
                       rf"|(?<!by )(?:tomorrow|tonight|today|this afternoon|end of (?:the )?(?:day|week)))\b")


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text or "") if s and s.strip()]


def _due_date(deadline: str, sent: pd.Timestamp) -> dt.date | None:
    """The calendar date a deadline refers to, read from the day the promise was made."""
    text, day = deadline.lower(), sent.date()
    if re.search(r"\b(?:today|tonight|eod|cob|end of (?:the )?(?:day|business)|noon|midnight|this (?:afternoon|evening)|[0-9]:[0-9]{2}|[0-9] ?[ap]m)\b", text):
        return day
    if "tomorrow" in text:
        return day + dt.timedelta(days=1)
    if re.search(r"\b(?:eow|end of (?:the )?week|this week)\b", text):
        return day + dt.timedelta(days=(4 - day.weekday()) % 7)
    if m := re.search(r"within ([0-9]+) (business |working )?(minute|hour|day)", text):
        n, unit = int(m.group(1)), m.group(3)
        if unit != "day":
            return (sent + pd.Timedelta(**{unit + "s": n})).date()
        if not m.group(2):
            return day + dt.timedelta(days=n)
        return pd.Timestamp(day + pd.offsets.BDay(n)).date()
    if m := re.search(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
        try:
            return dt.date.fromisoformat(m.group(0))
        except ValueError:
            return None
    words = re.findall(r"[a-z]+", text)
    weekday = next((i for i, name in enumerate(_WEEKDAYS) for w in words if len(w) >= 3 and name.startswith(w)), None)
    if weekday is not None:
        ahead = (weekday - day.weekday()) % 7
        return day + dt.timedelta(days=ahead + (7 if "next" in words and ahead == 0 else 0))
    month = next((i + 1 for i, name in enumerate(_MONTHS) for w in words if len(w) >= 3 and name.startswith(w)), None)
    if month and (m := re.search(r"\b([0-9]{1,2})(?:st|nd|rd|th)?\b", text)):
        try:
            due = dt.date(day.year, month, int(m.group(1)))
        except ValueError:
            return None
        return due if due >= day else due.replace(year=due.year + 1)
    return None


def extract_tried(messages: pd.DataFrame) -> list[dict]:
    """Agent sentences saying what has been done or asked already ("we restarted", "I asked you
    to clear the cache"), so CS does not suggest it again. Promises are left to `extract_promises`."""
    return [item for _, item in _tried_rows(_normalise_messages(messages))]


def extract_promises(messages: pd.DataFrame, now: dt.datetime) -> list[dict]:
    """Agent sentences promising something by a time ("we'll send the corrected invoice by
    Friday"), with the date it falls on: a broken promise is the fastest way to lose an escalated
    customer."""
    return [item for _, item in _promise_rows(_normalise_messages(messages), now)]


def _agent_sentences(msgs: pd.DataFrame) -> list[tuple[int, pd.Timestamp, str]]:
    """(row, sent_at, sentence) of every agent sentence; bodies are already masked."""
    agent = msgs[msgs["author"] == "agent"]
    return [(row, at, sentence) for row, at, body in zip(agent.index, agent["sent_at"], agent["body"]) for sentence in _sentences(body)]


def _tried_rows(msgs: pd.DataFrame) -> list[tuple[int, dict]]:
    return [(row, {"at": _fmt_time(at), "who": "agent", "text": sentence}) for row, at, sentence in _agent_sentences(msgs)
            if _TRIED.search(sentence) and not _FUTURE.search(sentence)]


def _promise_rows(msgs: pd.DataFrame, now: dt.datetime) -> list[tuple[int, dict]]:
    today = _utc(now).date()
    out = []
    for row, at, sentence in _agent_sentences(msgs):
        deadline = _DEADLINE.search(sentence) if _FUTURE.search(sentence) else None
        if not deadline:
            continue
        due = _due_date(deadline.group(0), at)
        days = (due - today).days if due else None
        status = ("no date" if due is None else "overdue" if days < 0 else "due today" if days == 0
                  else f"due in {days} day{'s' if days > 1 else ''}")
        out.append((row, {"at": _fmt_time(at), "who": "agent", "text": sentence, "deadline": deadline.group(0),
                          "due_date": due.isoformat() if due else None, "status": status}))
    return out


def _utc(value) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


# --------------------------------------------------------------------------------------------
# Timeline and effort
# --------------------------------------------------------------------------------------------

_STOPWORDS = frozenset("the and for you your our are was were have has had this that with from not but can will would could "
                       "please when why what how there their they them its it's i'm we've been still again just about".split())


def _words(text: str) -> frozenset[str]:
    return frozenset(w for w in re.findall(r"[a-z0-9']{3,}", text.lower()) if w not in _STOPWORDS)


def _rephrasings(customer: pd.DataFrame, asks: int, lookback: int = 8) -> list:
    """Which customer messages asked the question again. The signals pipeline's own flags are used
    when the frame carries them (`rephrase`); otherwise the `asks - 1` later messages closest in
    wording to an earlier message are taken, which is what `asks` counted."""
    if "rephrase" in customer.columns:
        return list(customer.index[customer["rephrase"].fillna(False).astype(bool)])
    repeats = max(int(asks) - 1, 0)
    if repeats == 0 or len(customer) < 2:
        return []
    bags = [_words(b) for b in customer["body"]]
    scores = []
    for k in range(1, len(bags)):
        earlier = bags[max(0, k - lookback):k]
        best = max((len(bags[k] & e) / len(bags[k] | e) if bags[k] | e else 0.0) for e in earlier)
        scores.append((-best, k))
    chosen = sorted(k for _, k in sorted(scores)[:repeats])
    return [customer.index[k] for k in chosen]


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _excerpt(text: str, words: int = 40) -> str:
    parts = (text or "").split()
    return " ".join(parts[:words]) + ("..." if len(parts) > words else "")


def _timeline(messages: pd.DataFrame, signals: TicketSignals, tried: list[tuple[int, dict]], promises: list[tuple[int, dict]]) -> tuple[list[dict], dict]:
    """Dated events of the ticket (first contact, first reply, each repeat, critical moments,
    fixes tried, promises, last message) and the effort figures read from the same messages."""
    effort = {"first_response_wait_hours": None, "customer_waiting_hours": None, "critical_moments": []}
    if not len(messages):
        return [], effort
    customer = messages[messages["author"] == "customer"]
    agent = messages[messages["author"] == "agent"]
    labels: dict = {i: [] for i in messages.index}
    if len(customer):
        labels[customer.index[0]].append("first contact")
    if len(agent):
        first_reply = agent[agent["sent_at"] >= customer["sent_at"].iloc[0]] if len(customer) else agent
        if len(first_reply) and len(customer):
            wait = (first_reply["sent_at"].iloc[0] - customer["sent_at"].iloc[0]).total_seconds() / 3600
            effort["first_response_wait_hours"] = round(wait, 1)
            labels[first_reply.index[0]].append(f"first agent reply (after {wait:.1f} h)")
    for n, i in enumerate(_rephrasings(customer, signals.asks), start=2):
        labels[i].append(f"asked again ({_ordinal(n)} time)")
    if len(customer):
        critical = detect_critical(customer["body"])
        for i, row in critical[critical["critical"]].iterrows():
            labels[i].append(f"critical moment ({row['category']}: \"{row['matched']}\")")
            effort["critical_moments"].append({"at": _fmt_time(messages.at[i, "sent_at"]), "category": row["category"], "text": row["matched"]})
    for row in dict.fromkeys(row for row, _ in tried):
        labels[row].append("fix tried")
    for row, p in promises:
        labels[row].append(f"promise ({p['deadline']}" + (f", due {p['due_date']})" if p["due_date"] else ")"))
    last = messages.index[-1]
    labels[last].append("last message")
    events = [{"at": _fmt_time(messages.at[i, "sent_at"]), "who": messages.at[i, "author"], "event": "; ".join(labels[i]),
               "text": _excerpt(messages.at[i, "body"])} for i in messages.index if labels[i]]
    return events, effort


# --------------------------------------------------------------------------------------------
# Next action and success by theme
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Theme:
    action: str  # what the CS owner does next (internal)
    for_customer: str  # the same, as the customer reads it in the warm handoff
    expertise: str  # how the owner is introduced
    success_30: str
    success_60: str


_THEMES = {
    "security": _Theme("Open a security incident with one named incident lead and send the customer a written acknowledgement",
                       "coordinate our security response and keep you updated in writing", "who works with our security response team",
                       "incident closed with a written root-cause report the customer has accepted",
                       "no repeat incident, and any security questionnaire from the customer answered"),
    "legal": _Theme("Loop in legal before any written reply, then call the executive sponsor",
                    "work with our legal team and yours to settle the contract question", "who works with our legal team on contract matters",
                    "legal position agreed with the customer, no formal notice outstanding", "the contract question settled in writing"),
    "billing": _Theme("Call the billing contact with a credit proposal", "go through the invoice with your billing contact and propose a correction",
                      "who handles billing and contract questions for accounts like yours",
                      "disputed amount settled and the corrected invoice accepted", "next invoice paid on time, no new billing ticket"),
    "cancel": _Theme("Call the decision maker today with a save plan: acknowledge the problem, fix it, offer a renewal review",
                     "talk through what has gone wrong and agree a plan with you", "who looks after your account",
                     "save plan agreed and the cancellation request withdrawn", "usage back to its 90-day baseline"),
    "effort": _Theme("Take the ticket over: one owner, no more transfers", "own your ticket from here to resolution, so you do not have to repeat yourself",
                     "who will coordinate our support and engineering teams on this issue",
                     "issue resolved and confirmed by the customer, with no further repeat contact",
                     "no new ticket on the same issue and customer sentiment neutral or better"),
    "risk": _Theme("Schedule an executive business review", "set up a business review with your team to make sure the platform delivers what you need",
                   "who looks after your account", "executive business review held and a success plan agreed", "usage back to its 90-day baseline"),
    "watch": _Theme("Review the account at the next CS check-in; no customer interruption yet", "check in with you on how things are going",
                    "who looks after your account", "risk drivers reviewed at a CS check-in", "usage at or above its 90-day baseline"),
    "support": _Theme("Support keeps the ticket; CS is kept informed", "keep an eye on your ticket with our support team", "who looks after your account",
                      "issue resolved and confirmed by the customer", "no new ticket on the same issue"),
}
_RULE_THEME = {"security": "security", "privacy": "security", "fraud": "security", "legal_threat": "legal", "billing_dispute_high_value": "billing",
               "effort_frustration_value": "effort", "bot_handoff": "effort", "risk": "risk", "watch": "watch"}
_CRITICAL_THEME = {"legal": "legal", "chargeback": "billing", "cancel": "cancel", "supervisor": "effort", "disappointed": "effort"}
_CATEGORY_THEME = {"billing": "billing", "security": "security", "legal": "legal"}


def _themes(decision: Decision, signals: TicketSignals) -> list[str]:
    """Themes in order of importance: the primary reason's, then effort (frustration, repeated
    asks), then the other fired rules, then the ticket's category."""
    def theme_of(rule: str) -> str:
        if rule == "critical_moment":
            cats = [c for c in signals.critical if c in _CRITICAL_THEME]
            return _CRITICAL_THEME[cats[0]] if cats else "effort"
        return _RULE_THEME.get(rule, "support")

    ordered = [theme_of(decision.primary_reason)] if decision.primary_reason else []
    if decision.frustrated or signals.asks >= 3 or any(r.rule == "effort_frustration_value" for r in decision.rules):
        ordered.append("effort")  # a live, frustrated customer comes before slower account work
    ordered += [theme_of(r.rule) for r in decision.rules]
    ordered.append(_CATEGORY_THEME.get((signals.category or "").lower(), "support"))
    out = []
    for t in ordered:
        if t not in out and not (t == "support" and out):
            out.append(t)
    return out


# --------------------------------------------------------------------------------------------
# Formatting helpers
# --------------------------------------------------------------------------------------------


def _fmt_time(value) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    ts = pd.Timestamp(value)
    if pd.isna(ts):
        return None
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.strftime("%Y-%m-%d %H:%M UTC")


def _fmt_money(value: float | None) -> str | None:
    return None if value is None else f"${value:,.0f}"


def _fmt_minutes(minutes: int | None) -> str | None:
    if minutes is None:
        return None
    if minutes % 60 or minutes < 60:
        return f"{minutes} minutes"
    return f"{minutes // 60} hour{'s' if minutes >= 120 else ''}"


def _number(value) -> float | None:
    """JSON-ready: NaN and missing become None."""
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) or math.isinf(value) else value


def _cap(text: str | None, words: int) -> str:
    return _excerpt(text or "", words)


def _sentiment_label(score: float | None) -> str | None:
    if score is None:
        return None
    return ("very negative" if score <= -0.6 else "negative" if score <= -0.2 else "neutral" if score < 0.2
            else "positive" if score < 0.6 else "very positive")


def _drift_label(drift: float | None) -> str | None:
    if drift is None:
        return None
    return "getting worse" if drift <= -0.3 else "slightly worse" if drift < -0.1 else "stable" if drift <= 0.1 else "improving"


def _person(decision: Decision, facts: AccountFacts) -> str | None:
    """The named person who owns the handoff: a queue's on-call is not a name to give a customer."""
    owner = decision.owner if decision.owner and not decision.owner.endswith(" on-call") else None
    return owner or facts.csm_owner or None


def _normalise_messages(messages: pd.DataFrame | None) -> pd.DataFrame:
    """Sorted by time, UTC, masked bodies; an empty or column-less frame becomes an empty one."""
    columns = ["sent_at", "author", "body"]
    if messages is None or not len(messages) or not set(columns) <= set(messages.columns):
        return pd.DataFrame({"sent_at": pd.Series([], dtype="datetime64[ns, UTC]"), "author": pd.Series([], dtype="str"),
                             "body": pd.Series([], dtype="str")})
    extra = [c for c in ("rephrase",) if c in messages.columns]
    m = messages[columns + extra].copy()
    m["sent_at"] = pd.to_datetime(m["sent_at"], utc=True)
    m["author"] = m["author"].astype("str").str.lower()
    m["body"] = mask_series(m["body"]).fillna("")
    return m.sort_values("sent_at", kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# The package
# --------------------------------------------------------------------------------------------


@dataclass
class HandoffPackage:
    form: dict
    markdown: str
    summary: str
    warm_handoff: str

    def to_dict(self) -> dict:
        return {"form": self.form, "summary": self.summary, "warm_handoff": self.warm_handoff, "markdown": self.markdown}


def build_handoff(decision: Decision, facts: AccountFacts, risk: RiskView | None, signals: TicketSignals | None, messages: pd.DataFrame,
                  now: dt.datetime, *, ticket_subject: str | None = None, max_words: int = 200) -> HandoffPackage:
    """The context package for one decision: form, summary (at most `max_words` words), warm
    handoff message and a one-page Markdown rendering."""
    signals = signals or TicketSignals()
    msgs = _normalise_messages(messages)
    subject = mask_pii(ticket_subject) if ticket_subject else None
    tried_rows, promise_rows = _tried_rows(msgs), _promise_rows(msgs, now)
    timeline, effort = _timeline(msgs, signals, tried_rows, promise_rows)
    tried, promises = [t for _, t in tried_rows], [p for _, p in promise_rows]
    specifics = extract_specifics(([subject] if subject else []) + msgs["body"].tolist())
    themes = _themes(decision, signals)
    form = _form(decision, facts, risk, signals, msgs, now, subject, timeline, effort, specifics, tried, promises, themes)
    summary = _summary(form, max_words)
    warm = _warm_handoff(decision, facts, form, themes)
    markdown = _markdown(form, summary, warm)
    return HandoffPackage(form=form, markdown=markdown, summary=summary, warm_handoff=warm)


def _form(decision, facts, risk, signals, msgs, now, subject, timeline, effort, specifics, tried, promises, themes) -> dict:
    now_utc = _utc(now)
    days_to_renewal = _number(facts.days_to_renewal)
    if days_to_renewal is None and facts.renewal_date:
        try:
            days_to_renewal = float((dt.date.fromisoformat(str(facts.renewal_date)[:10]) - now_utc.date()).days)
        except ValueError:
            days_to_renewal = None
    arr, average = _number(facts.arr), _number(facts.average_arr)
    curve = {int(h): _number(p) for h, p in sorted((risk.curve if risk else {}).items())}
    # strongest first: by effect in points where the reasons carry it (models/reasons.py), else by log-odds
    reasons = sorted(risk.reasons, key=lambda r: -(_number(r.get("points", r.get("contribution"))) or 0.0)) if risk else []
    customer_rows = msgs[msgs["author"] == "customer"]
    waiting = None
    if len(msgs) and msgs["author"].iloc[-1] == "customer":
        waiting = round((now_utc - msgs["sent_at"].iloc[-1]).total_seconds() / 3600, 1)
    effort = {**effort, "customer_waiting_hours": waiting}
    respond_by = (now_utc + pd.Timedelta(minutes=decision.response_window_minutes)) if decision.response_window_minutes else None
    primary = _THEMES[themes[0]]
    horizon_90 = curve.get(90)
    renew_soon = days_to_renewal is not None and 0 <= days_to_renewal <= 90
    success_90 = "renewal signed" if renew_soon else "renewal conversation held and NPS answered above 6"
    open_promises = [p for p in promises if p["status"] != "no date"]
    other_actions = [_THEMES[t].action for t in themes[1:3]]
    for p in open_promises[-2:]:
        verb = "Overdue promise, deliver it today" if p["status"] == "overdue" else "Keep the promise made"
        other_actions.append(f"{verb}: \"{p['text']}\"" + (f" (due {p['due_date']})" if p["due_date"] else ""))
    return {
        "customer": {
            "account_id": facts.account_id, "name": facts.name, "segment": facts.segment, "arr": arr,
            "arr_vs_average": round(arr / average, 2) if arr is not None and average else None,
            "renewal_date": facts.renewal_date, "days_to_renewal": int(round(days_to_renewal)) if days_to_renewal is not None else None,
            "owner": facts.csm_owner, "technical_lead": facts.technical_lead, "executive_sponsor": facts.exec_sponsor,
        },
        "issue": {
            "ticket_id": decision.ticket_id or signals.ticket_id, "subject": subject, "category": signals.category,
            "priority": signals.priority, "timeline": timeline, "technical_specifics": specifics, "tried": tried, "promised": promises,
        },
        "customer_state": {
            "sentiment": _number(signals.sentiment), "sentiment_label": _sentiment_label(_number(signals.sentiment)),
            "sentiment_first": _number(signals.sentiment_first),
            "drift": round(signals.drift, 3) if _number(signals.drift) is not None else None, "drift_label": _drift_label(_number(signals.drift)),
            "frustrated": decision.frustrated,
            "effort": {"asks": int(signals.asks), "customer_messages": int(signals.customer_messages or len(customer_rows)),
                       "negative_messages": int(signals.negative_messages), **effort,
                       "critical_categories": list(signals.critical)},
        },
        "business_impact": {
            "arr": arr, "high_value": decision.high_value, "renewal_date": facts.renewal_date,
            "days_to_renewal": int(round(days_to_renewal)) if days_to_renewal is not None else None, "renewal_near": decision.renewal_near,
            "risk_curve_pct": {str(h): round(p * 100, 1) for h, p in curve.items() if p is not None},
            "expected_arr_loss_90d": round(arr * horizon_90) if arr is not None and horizon_90 is not None else None,
            "top_reasons": [mask_pii(str(r["sentence"]) + (f" ({r['effect']})" if r.get("effect") else "")) for r in reasons[:3] if r.get("sentence")],
            "model_version": risk.model_version if risk else None,
        },
        "what_is_needed": {
            "recommended_action": primary.action, "other_actions": other_actions, "owner": decision.owner, "queue": decision.queue,
            "response_window_minutes": decision.response_window_minutes, "respond_by": _fmt_time(respond_by),
            "follow_up_due": _fmt_time(decision.follow_up_due) if decision.follow_up_due else None,
            "success": {"30_days": primary.success_30, "60_days": primary.success_60, "90_days": success_90},
        },
        "decision": {
            "escalate": decision.escalate, "band": decision.band, "queue": decision.queue, "priority": decision.priority,
            "primary_reason": decision.primary_reason,
            "rules": [{"rule": r.rule, "detail": mask_pii(r.detail)} for r in decision.rules],
            "bot_action": decision.bot_action, "policy_version": decision.policy_version, "model_version": decision.model_version,
            "decided_at": _fmt_time(decision.decided_at) if decision.decided_at else None,
        },
        "generated_at": _fmt_time(now_utc),
    }


# --------------------------------------------------------------------------------------------
# Summary (<= max_words), warm handoff, Markdown
# --------------------------------------------------------------------------------------------


def _fit(sentences: list[tuple[int, list[str]]], max_words: int) -> str:
    """Sentences are (priority, variants from longest to shortest), in reading order. While the
    text is too long, the least important sentence (highest priority number, latest first) is
    shortened, then dropped; priority-0 sentences are only shortened. A last resort cuts the text
    at `max_words` words with an ellipsis."""
    chosen = [0] * len(sentences)
    alive = [True] * len(sentences)

    def text() -> str:
        return " ".join(v[chosen[i]] for i, (_, v) in enumerate(sentences) if alive[i] and v[chosen[i]])

    while len(text().split()) > max_words:
        cands = [i for i, (p, v) in enumerate(sentences) if alive[i] and (p > 0 or chosen[i] < len(v) - 1)]
        if not cands:
            break
        i = max(cands, key=lambda k: (sentences[k][0], k))
        if chosen[i] < len(sentences[i][1]) - 1:
            chosen[i] += 1
        else:
            alive[i] = False
    words = text().split()
    if len(words) > max_words:
        words = words[:max(max_words, 1)] if max_words >= 1 else []
        if words:
            words[-1] = words[-1].rstrip(".,;:") + "..."
    return " ".join(words)


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _clause(text: str, words: int) -> str:
    """A sentence cut to `words` words to sit inside another sentence: its own full stop goes,
    an ellipsis shows a cut."""
    cut = _cap(text, words)
    return cut if cut.endswith("...") else cut.rstrip(".!?;, ")


def _end(text: str) -> str:
    return text if text.endswith((".", "!", "?")) else text + "."


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


def _promise_when(p: dict) -> str:
    """'due Friday 2024-03-15, in 2 days' from a promise of the form."""
    if not p["due_date"]:
        return p["deadline"]
    day = dt.date.fromisoformat(p["due_date"])
    status = p["status"].removeprefix("due ")
    return f"due {day.strftime('%A')} {p['due_date']}, {status}"


def _summary(form: dict, max_words: int) -> str:
    """About 200 words of plain prose in reading order (who, what, story, specifics, tried,
    promised, state, impact, next, owner, success); `_fit` enforces the budget by importance."""
    c, issue, state, impact, need, dec = (form[k] for k in ("customer", "issue", "customer_state", "business_impact", "what_is_needed", "decision"))
    effort = state["effort"]
    name = _cap(c["name"] or c["account_id"], 8)
    who_id = f"{name} ({_cap(c['account_id'], 3)})" if c["name"] else name
    money = _fmt_money(c["arr"])
    bits = [c["segment"].replace("_", "-") if c["segment"] else None,
            (f"{money} ARR" + (f" ({c['arr_vs_average']}x average)" if c["arr_vs_average"] else "")) if money else None,
            (f"renews {c['renewal_date']}" + (f" ({c['days_to_renewal']} days)" if c["days_to_renewal"] is not None else "")) if c["renewal_date"]
            else f"renewal in {c['days_to_renewal']} days" if c["days_to_renewal"] is not None else None]
    people = [f"technical lead {_cap(c['technical_lead'], 6)}" if c["technical_lead"] else None,
              {True: "executive sponsor in place", False: "no executive sponsor"}.get(c["executive_sponsor"])]
    bits, people = [b for b in bits if b], [p for p in people if p]
    who_full = f"{who_id}: {', '.join(bits) or 'account'}" + (f"; {', '.join(people)}." if people else ".")
    who_short = f"{who_id}" + (f", {money} ARR." if money else ".")

    ticket = f"Ticket {_cap(issue['ticket_id'], 3)}" if issue["ticket_id"] else "No ticket"
    tags = ", ".join(t for t in (issue["category"], issue["priority"]) if t)
    what = ticket + (f" ({tags})" if tags else "") + (f" \"{_cap(issue['subject'], 12)}\"" if issue["subject"] else "")
    if dec["escalate"]:
        others = len(dec["rules"]) - 1
        primary = next((r["detail"] for r in dec["rules"] if r["rule"] == dec["primary_reason"]), dec["primary_reason"])
        what_full = (f"{what} escalated as {dec['band']} to {_cap(dec['queue'], 3)}: {_cap(primary, 12)}"
                     + (f" (+{others} more rule{'s' if others > 1 else ''})." if others > 0 else "."))
        what_short = f"{what} escalated as {dec['band']}."
    else:
        what_full = what_short = f"{what}, not escalated (band {dec['band']})."

    timeline, story = issue["timeline"], []
    if timeline:
        first = next((e for e in timeline if "first contact" in e["event"]), timeline[0])
        story.append(f"First contact {first['at']}")
        if effort["asks"] > 1:
            story.append(f"asked {effort['asks']} times")
        waiting = f", unanswered for {effort['customer_waiting_hours']} h" if effort["customer_waiting_hours"] is not None else ""
        story.append(f"{timeline[-1]['who']} last wrote {timeline[-1]['at']}{waiting}")
    happened = ["; ".join(story) + "."] if story else [""]

    spec = issue["technical_specifics"]
    spec_values = [_cap(v, 3) for key in ("error_codes", "versions", "regions") for v in spec[key][:3]]
    specifics = [f"Specifics: {', '.join(spec_values)}."] if spec_values else [""]

    tried = [_clause(t["text"], 10) for t in issue["tried"]]
    tried_v = [_end(f"Tried: {'; '.join(_lower_first(t) for t in dict.fromkeys(tried[:1] + tried[-1:]))}"),
               _end(f"Tried: {_lower_first(tried[-1])}")] if tried else [""]
    promised = issue["promised"]
    promised_v = ([f"Promised: \"{_cap(promised[-1]['text'], 15)}\" ({_promise_when(promised[-1])}).",
                   f"Promised: {_promise_when(promised[-1])}."] if promised else [""])

    mood = []
    if state["sentiment"] is not None:
        mood.append(f"Sentiment {state['sentiment_label']} ({state['sentiment']:+.2f})"
                    + (f", {state['drift_label']} ({state['drift']:+.2f} since the first message)" if state["drift"] is not None else ""))
    if state["frustrated"]:
        mood.append("frustrated")
    crit = list(dict.fromkeys([m["category"] for m in effort["critical_moments"]] + list(effort["critical_categories"])))
    effort_bits = [f"critical moments: {', '.join(crit[:4])}"] if crit else []
    state_full = "; ".join(mood + effort_bits)
    state_v = [state_full[:1].upper() + state_full[1:] + "." if state_full else "", ("; ".join(mood) + ".") if mood else ""]

    curve = impact["risk_curve_pct"]
    impact_v = [""]
    if curve:
        risk_text = f"Churn risk {'/'.join(f'{p:g}' for p in curve.values())}% at {'/'.join(curve)} days"
        reasons = impact["top_reasons"]
        impact_v = ([_end(f"{risk_text}; top reasons: {'; '.join(_clause(r, 10) for r in reasons[:2])}"), f"{risk_text}."] if reasons else [f"{risk_text}."])

    actions = [_lower_first(_cap(a, 14)) for a in [need["recommended_action"]] + need["other_actions"][:1]]
    action_v = [_end(f"Next: {'; '.join(actions)}"), _end(f"Next: {actions[0]}")]
    owner = _cap(need["owner"] or "unassigned", 6)
    window = _fmt_minutes(need["response_window_minutes"])
    owner_full = (f"Owner: {owner}" + (f" ({_cap(need['queue'], 3)})" if need["queue"] else "") + (f", respond within {window}" if window else "")
                  + (f", follow-up due {need['follow_up_due']}" if need["follow_up_due"] else "") + ".")
    owner_short = f"Owner: {owner}" + (f", respond within {window}." if window else ".")
    s = need["success"]
    success_v = [f"Success: 30 days, {s['30_days']}; 60 days, {s['60_days']}; 90 days, {s['90_days']}.",
                 f"Success at 30 days: {s['30_days']}."]
    return _fit([(0, [who_full, who_short]), (1, [what_full, what_short]), (4, happened), (5, specifics), (6, tried_v),
                 (2, promised_v), (3, state_v), (4, impact_v), (1, action_v), (0, [owner_full, owner_short]), (3, success_v)], max_words)


def _warm_handoff(decision: Decision, facts: AccountFacts, form: dict, themes: list[str]) -> str:
    """To the customer, from support: who takes over, why them, what happens next and when. A
    silent transfer makes the experience far worse (DOMAIN.md), so this is never skipped."""
    person = _person(decision, facts)
    theme = _THEMES[themes[0]]
    issue, state, need = form["issue"], form["customer_state"], form["what_is_needed"]
    has_ticket = bool(issue["ticket_id"] or issue["subject"] or issue["timeline"])
    greeting = f"Hello {facts.name} team," if facts.name else "Hello,"
    lines = []
    if has_ticket:
        ticket = f" (ticket {issue['ticket_id']})" if issue["ticket_id"] else ""
        about = f"\"{_cap(issue['subject'], 12)}\"{ticket}" if issue["subject"] else f"your request{ticket}"
        lines.append(f"Thank you for your patience with {about}.")
        if state["effort"]["asks"] > 1 or state["frustrated"]:
            lines.append("I am sorry you have had to follow up more than once.")
    contact = (" From now on {who} your single point of contact for this, with the full history in hand, so you will not need to "
               "explain anything again.") if has_ticket else ""
    if person:
        role = "your Customer Success Manager" if person == facts.csm_owner else "from our Customer Success team"
        doer = person.split()[0]
        lines.append(f"I'd like to introduce {person}, {role}, {theme.expertise}." + contact.format(who=f"{doer} is"))
    else:
        doer = "our team"
        lines.append("A senior member of our Customer Success team is taking this on." + contact.format(who="they are"))
    window = _fmt_minutes(need["response_window_minutes"])
    when = f"will contact you within {window}" if window else "will be in touch with you shortly"
    follow_up = f"; you will hear from us again no later than {need['follow_up_due']}." if need["follow_up_due"] else "."
    lines.append(f"{doer[:1].upper() + doer[1:]} will {theme.for_customer}, and {when}{follow_up}")
    if issue["promised"]:
        p = issue["promised"][-1]
        quote = f"\"{_cap(p['text'], 25)}\""
        if p["status"] == "overdue":
            lines.append(f"We have not yet kept the promise we made on {p['at'][:10]} ({quote}); {doer} will put that right first.")
        else:
            lines.append(f"Our earlier promise still stands, and {doer} will make sure it is kept: {quote}")
    return "\n\n".join([greeting, " ".join(lines), "Kind regards,\nCustomer Support"])


def _cell(value) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _markdown(form: dict, summary: str, warm: str, max_rows: int = 12) -> str:
    """One page: the headline, the summary, then the form section by section."""
    c, issue, state, impact, need, dec = (form[k] for k in ("customer", "issue", "customer_state", "business_impact", "what_is_needed", "decision"))
    effort = state["effort"]
    title = f"# Handoff: {_cell(c['name'] or c['account_id'])} ({_cell(c['account_id'])})" + (f", ticket {_cell(issue['ticket_id'])}" if issue["ticket_id"] else "")
    window = _fmt_minutes(need["response_window_minutes"])
    head = [f"**{dec['band'].upper()}**", f"queue {_cell(dec['queue'])}", f"owner **{_cell(need['owner'])}**"]
    head += [f"respond within {window} (by {need['respond_by']})"] if window else []
    head += [f"follow-up due {need['follow_up_due']}"] if need["follow_up_due"] else []
    out = [title, "", " | ".join(head), "", "## Summary", "", summary, ""]

    arr = _fmt_money(c["arr"])
    arr_text = (arr + (f" ({c['arr_vs_average']}x the average account)" if c["arr_vs_average"] else "")) if arr else None
    renewal = f"{c['renewal_date']} (in {c['days_to_renewal']} days)" if c["renewal_date"] and c["days_to_renewal"] is not None else c["renewal_date"]
    out += ["## Customer", "", "| | |", "| --- | --- |"]
    out += [f"| {k} | {_cell(v)} |" for k, v in (("Account", f"{c['name']} ({c['account_id']})" if c["name"] else c["account_id"]),
                                                 ("Segment", c["segment"]), ("ARR", arr_text), ("Renewal", renewal),
                                                 ("Owner (CSM)", c["owner"]), ("Technical lead", c["technical_lead"]),
                                                 ("Executive sponsor", c["executive_sponsor"]))]
    out += ["", "## Issue", "",
            f"Ticket {_cell(issue['ticket_id'])} | category {_cell(issue['category'])} | priority {_cell(issue['priority'])}"
            + (f" | subject \"{_cell(issue['subject'])}\"" if issue["subject"] else ""), "", "### Timeline", ""]
    timeline = issue["timeline"]
    if timeline:
        shown = timeline if len(timeline) <= max_rows else timeline[: max_rows // 2] + timeline[-(max_rows // 2):]
        out += ["| when | who | event | excerpt |", "| --- | --- | --- | --- |"]
        for n, e in enumerate(shown):
            if len(shown) < len(timeline) and n == max_rows // 2:
                out.append(f"| ... | | {len(timeline) - len(shown)} more events in the form | |")
            out.append(f"| {e['at']} | {e['who']} | {_cell(e['event'])} | {_cell(e['text'])} |")
    else:
        out.append("No messages.")
    spec = issue["technical_specifics"]
    out += ["", "### Technical specifics", ""]
    out += [f"- {label}: {_cell(', '.join(spec[key])) if spec[key] else 'none found'}"
            for key, label in (("error_codes", "Error codes"), ("versions", "Versions"), ("regions", "Regions"))]
    out += ["", "### Already tried", ""] + (_bullets([f"{t['at']}: \"{_cell(t['text'])}\"" for t in issue["tried"]]) or ["Nothing recorded."])
    out += ["", "### Promised", ""] + (_bullets([f"{p['at']}: \"{_cell(p['text'])}\" ({_cell(p['deadline'])}"
                                                  + (f"; {_promise_when(p)})" if p["due_date"] else ")") for p in issue["promised"]])
                                        or ["No promises with a deadline."])

    sentiment = (f"{state['sentiment_label']} ({state['sentiment']:+.2f})" if state["sentiment"] is not None else "unknown")
    drift = (f"{state['drift_label']} ({state['drift']:+.2f} since the first message)" if state["drift"] is not None else "unknown")
    crit = ", ".join(f"{m['category']} ({m['at']}: \"{_cell(m['text'])}\")" for m in effort["critical_moments"][:5]) or ", ".join(effort["critical_categories"]) or "none"
    out += ["", "## Customer state", "", f"- Sentiment: {sentiment}; trend: {drift}; frustrated: {_cell(state['frustrated'])}",
            f"- Effort: asked {effort['asks']} time{'s' if effort['asks'] != 1 else ''}; {effort['customer_messages']} customer messages "
            f"({effort['negative_messages']} negative); first reply after "
            + (f"{effort['first_response_wait_hours']} h" if effort["first_response_wait_hours"] is not None else "-")
            + (f"; customer waiting {effort['customer_waiting_hours']} h" if effort["customer_waiting_hours"] is not None else ""),
            f"- Critical moments: {crit}"]

    curve = ", ".join(f"{h} days {p:g}%" for h, p in impact["risk_curve_pct"].items()) or "no model"
    out += ["", "## Business impact", "", f"- ARR: {_cell(arr)}; high value: {_cell(impact['high_value'])}; expected ARR loss within 90 days: "
            f"{_cell(_fmt_money(impact['expected_arr_loss_90d']))}",
            f"- Renewal: {_cell(renewal)}; renewal near: {_cell(impact['renewal_near'])}",
            f"- Churn risk: {curve} (model {_cell(impact['model_version'])})"]
    out += _bullets([f"Reason: {_cell(r)}" for r in impact["top_reasons"]])

    s = need["success"]
    out += ["", "## What is needed", "", f"- **Next action:** {_cell(need['recommended_action'])}"]
    out += _bullets([f"Also: {_cell(a)}" for a in need["other_actions"]])
    out += [f"- Owner: **{_cell(need['owner'])}** (queue {_cell(need['queue'])}); respond within {_cell(window)}"
            + (f" (by {need['respond_by']})" if need["respond_by"] else "") + f"; follow-up due {_cell(need['follow_up_due'])}",
            f"- Success at 30 days: {s['30_days']}", f"- Success at 60 days: {s['60_days']}", f"- Success at 90 days: {s['90_days']}"]

    out += ["", "## Decision", "", f"- Escalate: {_cell(dec['escalate'])}; band {dec['band']}; priority {_cell(dec['priority'])}; "
            f"primary reason {_cell(dec['primary_reason'])}; bot action {_cell(dec['bot_action'])}"]
    out += _bullets([f"Rule `{r['rule']}`: {_cell(r['detail'])}" for r in dec["rules"]])
    out += [f"- Policy {_cell(dec['policy_version'])}; model {_cell(dec['model_version'])}; decided {_cell(dec['decided_at'])}"]
    out += ["", "## Warm handoff (to send to the customer)", ""] + ["> " + line if line else ">" for line in warm.split("\n")]
    return "\n".join(out) + "\n"


def _bullets(items: list[str], limit: int = 8) -> list[str]:
    lines = [f"- {i}" for i in items[:limit]]
    return lines + ([f"- ... and {len(items) - limit} more in the form"] if len(items) > limit else [])
