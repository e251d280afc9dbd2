"""Personal data in quoted text: emails, card numbers and phone numbers are masked; versions,
error codes, dates, ids and amounts stay, because CS needs them. Every piece of quoted text in a
handoff goes through `mask_pii` before it is cut into excerpts, so an excerpt can never keep half
of a card number."""

from __future__ import annotations

import re

import pandas as pd

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
_CUED_PHONE = re.compile(
    r"(?i)(\b(?:call|phone|tel|telephone|mobile|cell|whatsapp|sms|text me|reach me)\b[^0-9\n\[]{0,15})"
    r"([0-9][0-9 .()-]{5,}[0-9])(?![\w])"
)
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
            digits = "".join(groups[i : j + 1])
            shaped = tuple(len(g) for g in groups[i : j + 1]) in _CARD_GROUPINGS
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
