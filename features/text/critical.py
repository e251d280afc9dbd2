"""Critical moments in customer messages (docs/escalation-practice.md: escalate immediately): wanting to cancel or
close the account, asking for a manager, "very disappointed", legal language, chargebacks.

Negation-aware: a phrase preceded within three words by a negator ("I don't want to cancel",
"no need to escalate to a manager", "not disappointed at all") does not count. A whole column of
messages is first filtered by one vectorised search for any phrase; the rules then run with `re`
on the few messages that hold one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import pandas as pd

#: Category -> pattern. Order is severity: the first category found names the message.
PATTERNS: dict[str, str] = {
    "legal": (
        r"legal team|lawyers?|attorneys?|our counsel|litigation|lawsuit|\bsue\b|breach of (?:the |our )?(?:contract|agreement)"
        r"|formal (?:notice|complaint)|sla (?:breach|violation)\w*"
    ),
    "chargeback": (
        r"charge ?backs?|dispute (?:it|this|the charge|the payment) with (?:our|my|the) bank|dispute (?:the"
        r"|this|that) (?:charge|payment)"
    ),
    "cancel": (
        r"cancel\w* (?:our|the|my|this) (?:subscription|account|contract|plan|service)|(?:want|going|plan\w*|decided|need|like) to cancel\b"
        r"|cancellation terms|close (?:our|the|my) account|terminat\w* (?:the |our |this )?(?:contract|agreement|subscription)"
        r"|(?:not|won't|will not) (?:be )?renew\w*|stop the renewal|(?:evaluating|looking at|considering) "
        r"(?:other vendors|alternatives|competitors)"
        r"|(?:switch|mov)\w* to (?:a |another )?(?:competitor|vendor)|exit\w* the contract|find an alternative|(?:leave|leaving) you"
    ),
    "supervisor": (
        r"(?:speak|talk) to (?:a |your |the )?(?:manager|supervisor)|(?:your|a) (?:manager|supervisor)\b"
        r"|someone senior|head of support|escalate (?:this|it) to|an executive on"
    ),
    "disappointed": r"(?:very|extremely|really|deeply|so|incredibly|hugely) disappointed",
}
NEGATORS = (
    r"not|no|never|don't|do not|doesn't|does not|didn't|won't|isn't|aren't|wasn't|no need to|no intention (?:of|to)"
    r"|not planning to|not going to|without"
)
_CRIT = "|".join(f"(?:{p})" for p in PATTERNS.values())
# a negator, up to three words, then a critical phrase: removed with the rest of its clause
_NEGATED = re.compile(rf"\b(?:{NEGATORS})\b(?:\W+[\w']+){{0,3}}?\W+(?:{_CRIT})[^.,;!?]*", re.IGNORECASE)
# phrases that carry their own negation and are the signal itself ("not renew") are protected
_SELF_NEGATED = re.compile(r"(?:not|won't|will not) (?:be )?renew\w*", re.IGNORECASE)
_COMPILED = {name: re.compile(rf"\b(?:{p})", re.IGNORECASE) for name, p in PATTERNS.items()}
# Any critical phrase at all, negated or not. Stripping a negated clause only removes text, and
# what it leaves on either side of the cut is a non-word character and punctuation (or nothing),
# so it never makes a phrase that was not there: a message without one cannot be critical.
_ANY = re.compile(rf"\b(?:{_CRIT})", re.IGNORECASE)


#: below this many messages (one live ticket) the pre-filter costs more than it saves
SMALL = 32


def _one(text: str) -> tuple[str | None, str | None]:
    protected = _SELF_NEGATED.sub(lambda m: m.group(0).replace(" ", "_KEEP_"), text)
    clean = _NEGATED.sub(" ", protected).replace("_KEEP_", " ")
    for name, pattern in _COMPILED.items():
        found = pattern.search(clean)
        if found:
            return name, found.group(0).strip()
    return None, None


def critical_of(texts: Iterable[str]) -> list[tuple[str | None, str | None]]:
    """(category, matched words) per message, or (None, None): the rules, with `re` on each message
    (a live ticket's handful, or what `detect_critical`'s filter keeps)."""
    return [_one(t) for t in texts]


def detect_critical(texts: pd.Series) -> pd.DataFrame:
    """Per message: `critical` (bool), `category` (most severe, or null), `matched` (the words)."""
    texts = pd.Series(texts, dtype="str").fillna("")
    # one vectorised pass finds the few messages holding any phrase (a twentieth in the simulator);
    # only they go through the rules, message by message (below SMALL messages, all of them do)
    at = np.arange(len(texts)) if len(texts) < SMALL else np.flatnonzero(texts.str.contains(_ANY).to_numpy(dtype=bool))
    categories, words = np.full(len(texts), None, dtype=object), np.full(len(texts), None, dtype=object)
    for i, (name, words_found) in zip(at, critical_of(texts.iloc[at]), strict=True):
        categories[i], words[i] = name, words_found
    category = pd.Series(categories, index=texts.index, dtype="str")
    matched = pd.Series(words, index=texts.index, dtype="str")
    return pd.DataFrame({"critical": category.notna(), "category": category, "matched": matched})
