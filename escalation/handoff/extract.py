"""What the messages say that CS needs verbatim: technical specifics (error codes, versions,
regions), what was tried already and what was promised by when. Pure regular expressions over
masked text: no model, so it is fast, explainable and the same on every run."""

from __future__ import annotations

import datetime as dt
import re

import pandas as pd

from escalation.handoff._format import fmt_time, utc
from escalation.handoff.form import Promise, Specifics, Tried, plain
from escalation.handoff.pii import mask_series

# ------------------------------------------------------------------ technical specifics

_HTTP_REASONS = (
    "bad gateway|service unavailable|internal server error|gateway time-?out|too many requests|not found"
    "|forbidden|unauthori[sz]ed|bad request"
)
_ERROR_PATTERNS = (
    (re.compile(r"\b(?:ERR(?:OR)?|ORA|SQL|EC|E)[-_]?[0-9]{2,6}\b"), lambda m: m.group(0)),
    (re.compile(r"\b0x[0-9A-Fa-f]{4,16}\b"), lambda m: m.group(0)),
    (
        re.compile(r"\b(?:ECONNRESET|ECONNREFUSED|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND|EACCES|EPIPE)\b"),
        lambda m: m.group(0),
    ),
    (re.compile(r"(?i)\bHTTP(?:/[0-9](?:\.[0-9])?)?[ :]*([45][0-9]{2})\b"), lambda m: f"HTTP {m.group(1)}"),
    (
        re.compile(rf"(?i)\b([45][0-9]{{2}})(?: (?:{_HTTP_REASONS}|errors?|responses?|status)\b)"),
        lambda m: f"HTTP {m.group(1)}",
    ),
    (
        re.compile(r"(?i)\b(error code|status code|error|status|code)[ :#]*([0-9]{3,5})\b"),
        lambda m: _error_number(m.group(1), m.group(2)),
    ),
)


def _error_number(keyword: str, number: str) -> str | None:
    """'error 429' is an HTTP status; 'error 5021' is the product's own code; 'status 200' is no error."""
    if re.fullmatch(r"[45][0-9]{2}", number):
        return f"HTTP {number}"
    return f"error {number}" if "status" not in keyword.lower() else None


_PRODUCTS = (
    r"iOS|Android|Chrome|Firefox|Safari|Edge|Windows|macOS|Python|Node(?:\.js)?|Java|PostgreSQL|MySQL|Kubernetes"
)
_VERSION_PATTERNS = (
    (re.compile(r"\b[vV][0-9]+(?:\.[0-9]+)*\b"), lambda m: "v" + m.group(0)[1:]),
    (re.compile(rf"\b(?:{_PRODUCTS}) [0-9]+(?:\.[0-9]+)*\b"), lambda m: m.group(0)),
    (re.compile(r"(?i)\b(?:version|release|ver\.?)[ :]*[vV]?([0-9]+(?:\.[0-9]+)*)\b"), lambda m: m.group(1)),
    # three-part numbers, but neither dates (15.03.2024) nor IP addresses (four parts)
    (
        re.compile(r"(?<![\w.])(?![0-9]{1,2}\.[0-9]{1,2}\.[0-9]{4}\b)[0-9]+\.[0-9]+\.[0-9]+(?!\.?[0-9])"),
        lambda m: m.group(0),
    ),
)
_AREAS = "EU|US|UK|EMEA|APAC|LATAM|AMER|ANZ|DACH|Nordics"
_NOT_PLACES = (
    r"(?:Our|The|Your|This|That|Which|Same|Each|Every|Any|Another|Default|Primary|Secondary|One|Other|What|Whichever"
    r"|My|Their|Its|A|In|On|At|From|To)\b"
)
_DIRECTIONS = "east|west|north|south|central|northeast|southeast|northwest|southwest"
_REGION_PATTERNS = (
    (
        re.compile(rf"(?i)\b(?:us|eu|ap|sa|ca|me|af|il|mx|us-gov)-(?:{_DIRECTIONS})-[0-9]\b"),
        lambda m: m.group(0).lower(),
    ),  # AWS
    (
        re.compile(rf"(?i)\b(?:us|europe|asia|australia|northamerica|southamerica|me|africa)-(?:{_DIRECTIONS})[0-9]\b"),
        lambda m: m.group(0).lower(),
    ),  # GCP
    # market areas in capitals, but not inside shouting ("PLEASE HELP US NOW")
    (re.compile(rf"(?<![A-Z] )(?<![A-Z]-)\b(?:{_AREAS})\b(?! [A-Z]{{2}})(?!-[A-Z])"), lambda m: m.group(0)),
    (
        re.compile(
            rf"\b(?:(?!{_NOT_PLACES})[A-Z][a-z]+ )?(?!{_NOT_PLACES})[A-Z][a-z]+ (?:region|data ?cent(?:er|re)|datacenter|DC)\b"
        ),
        lambda m: m.group(0),
    ),
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


def specifics_of(texts: list[str]) -> Specifics:
    """Error codes, versions and regions named in the messages, so engineering can start without
    reading the thread."""
    texts = [t if isinstance(t, str) else "" for t in texts]
    return Specifics(
        error_codes=tuple(_find_all(texts, _ERROR_PATTERNS)),
        versions=tuple(_find_all(texts, _VERSION_PATTERNS)),
        regions=tuple(_find_all(texts, _REGION_PATTERNS)),
    )


def extract_specifics(texts: list[str]) -> dict:
    """`specifics_of` as JSON: {"error_codes": [...], "versions": [...], "regions": [...]}."""
    return plain(specifics_of(texts))


# ------------------------------------------------------------------ what was tried, what was promised

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[A-Z0-9])|\n+")
_FIRST_PERSON = r"\b(?:we|i|we've|i've|we have|i have|our (?:\w+ )?(?:team|engineers?|developers?))\b"
_TRIED_VERBS = (
    r"tried|restarted|rebooted|cleared|reinstalled|rolled back|reverted|reset|re-?synced|re-?ran|re-?started|re-?processed"
    r"|re-?generated|regenerated|refreshed|rotated|flushed|re-?deployed|patched|re-?applied|applied|checked|verified"
    r"|tested|reproduced|escalated|disabled|re-?enabled|enabled|asked you to|asked|had you|suggested|switched"
)
_TRIED = re.compile(rf"(?i){_FIRST_PERSON}[^.!?]*?\b(?:{_TRIED_VERBS})\b")
_FUTURE = re.compile(
    r"(?i)\b(?:we will|we'll|i will|i'll|we are going to|we're going to|i am going to|i'm going to|we shall"
    r"|you will (?:receive|get|have|hear)|you'll (?:receive|get|have|hear))\b"
)
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_WEEKDAY = r"(?:mon|tues?|wed(?:nes)?|thu(?:rs?)?|fri|sat(?:ur)?|sun)(?:day)?"
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*"
_TZ = r"(?:UTC|GMT|CET|CEST|BST|EST|EDT|PST|PDT|IST|AEST)"
_WHEN = (
    rf"(?:(?:this |next )?{_WEEKDAY}(?: (?:morning|afternoon|evening|noon|eod))?|end of (?:the )?(?:day|week|business|month)|eod|eow|cob"
    rf"|tomorrow(?: morning| afternoon| evening)?|tonight|today|this (?:afternoon|evening|week)|noon|midnight"
    rf"|[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}|{_MONTH} [0-9]{{1,2}}(?:st|nd|rd|th)?|[0-9]{{1,2}}(?:st|nd|rd|th)? (?:of )?{_MONTH}"
    rf"|[0-9]{{1,2}}(?::[0-9]{{2}})? ?(?:am|pm)(?: {_TZ})?|[0-9]{{1,2}}:[0-9]{{2}}(?: {_TZ})?)"
)
_DEADLINE = re.compile(
    rf"(?i)\b(?:(?:by|before|no later than|until|on) {_WHEN}|within [0-9]+ (?:business |working )?(?:minutes?|hours?|days?)"
    rf"|(?<!by )(?:tomorrow|tonight|today|this afternoon|end of (?:the )?(?:day|week)))\b"
)


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text or "") if s and s.strip()]


def _due_date(deadline: str, sent: pd.Timestamp) -> dt.date | None:
    """The calendar date a deadline refers to, read from the day the promise was made."""
    text, day = deadline.lower(), sent.date()
    if re.search(
        r"\b(?:today|tonight|eod|cob|end of (?:the )?(?:day|business)|noon|midnight|this "
        r"(?:afternoon|evening)|[0-9]:[0-9]{2}|[0-9] ?[ap]m)\b",
        text,
    ):
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


def normalise_messages(messages: pd.DataFrame | None) -> pd.DataFrame:
    """Sorted by time, UTC, masked bodies; an empty or column-less frame becomes an empty one."""
    columns = ["sent_at", "author", "body"]
    if messages is None or not len(messages) or not set(columns) <= set(messages.columns):
        return pd.DataFrame(
            {
                "sent_at": pd.Series([], dtype="datetime64[ns, UTC]"),
                "author": pd.Series([], dtype="str"),
                "body": pd.Series([], dtype="str"),
            }
        )
    extra = [c for c in ("rephrase",) if c in messages.columns]
    m = messages[columns + extra].copy()
    m["sent_at"] = pd.to_datetime(m["sent_at"], utc=True)
    m["author"] = m["author"].astype("str").str.lower()
    m["body"] = mask_series(m["body"]).fillna("")
    return m.sort_values("sent_at", kind="stable").reset_index(drop=True)


def extract_tried(messages: pd.DataFrame) -> list[dict]:
    """Agent sentences saying what has been done or asked already ("we restarted", "I asked you
    to clear the cache"), so CS does not suggest it again. Promises are left to `extract_promises`."""
    return [plain(item) for _, item in tried_rows(normalise_messages(messages))]


def extract_promises(messages: pd.DataFrame, now: dt.datetime) -> list[dict]:
    """Agent sentences promising something by a time ("we'll send the corrected invoice by
    Friday"), with the date it falls on: a broken promise is the fastest way to lose an escalated
    customer."""
    return [plain(item) for _, item in promise_rows(normalise_messages(messages), now)]


def _agent_sentences(msgs: pd.DataFrame) -> list[tuple[int, pd.Timestamp, str]]:
    """(row, sent_at, sentence) of every agent sentence; bodies are already masked."""
    agent = msgs[msgs["author"] == "agent"]
    return [
        (row, at, sentence)
        for row, at, body in zip(agent.index, agent["sent_at"], agent["body"], strict=True)
        for sentence in _sentences(body)
    ]


def tried_rows(msgs: pd.DataFrame) -> list[tuple[int, Tried]]:
    """(row, what was tried) from messages already normalised (`normalise_messages`)."""
    return [
        (row, Tried(at=fmt_time(at), who="agent", text=sentence))
        for row, at, sentence in _agent_sentences(msgs)
        if _TRIED.search(sentence) and not _FUTURE.search(sentence)
    ]


def tried_clause(sentence: str) -> str:
    """What was done, from its doer on: "Thanks for waiting, we restarted the sync" -> "we restarted
    the sync" (a summary has no room for the pleasantries)."""
    found = _TRIED.search(sentence)
    return sentence[found.start() :] if found else sentence


def promise_rows(msgs: pd.DataFrame, now: dt.datetime) -> list[tuple[int, Promise]]:
    """(row, promise) from messages already normalised, each with its status on `now`'s day."""
    today = utc(now).date()
    out = []
    for row, at, sentence in _agent_sentences(msgs):
        deadline = _DEADLINE.search(sentence) if _FUTURE.search(sentence) else None
        if not deadline:
            continue
        due = _due_date(deadline.group(0), at)
        if due is None:
            status = "no date"
        else:
            days = (due - today).days
            status = (
                "overdue" if days < 0 else "due today" if days == 0 else f"due in {days} day{'s' if days > 1 else ''}"
            )
        out.append(
            (
                row,
                Promise(
                    at=fmt_time(at),
                    who="agent",
                    text=sentence,
                    deadline=deadline.group(0),
                    due_date=due.isoformat() if due else None,
                    status=status,
                ),
            )
        )
    return out
