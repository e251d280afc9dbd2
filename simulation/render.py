"""Vectorised text assembly: fill slot templates for many rows at once.

Rows are grouped by template (banks are small, so there are few groups); each group is filled with
object-array concatenation, so the cost is a handful of numpy operations per template rather than
a Python call per message.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np

_FORMATTER = string.Formatter()


@lru_cache(maxsize=4096)
def _parse(template: str) -> tuple[tuple[str, str | None], ...]:
    return tuple((literal, field) for literal, field, _, _ in _FORMATTER.parse(template))


def pick(rng: np.random.Generator, bank: Sequence[str], n: int) -> np.ndarray:
    """`n` entries drawn uniformly from a phrase bank, as an object array."""
    return np.asarray(bank, dtype=object)[rng.integers(0, len(bank), size=n)]


def fill(templates: np.ndarray, slots: Mapping[str, np.ndarray]) -> np.ndarray:
    """Fill `{slot}` fields of per-row templates with per-row slot values."""
    templates = np.asarray(templates, dtype=object)
    out = np.empty(len(templates), dtype=object)
    codes, uniques = _factorize(templates)
    for code, template in enumerate(uniques):
        rows = np.flatnonzero(codes == code)
        text = np.full(len(rows), "", dtype=object)
        for literal, field in _parse(template):
            if literal:
                text = text + literal
            if field is not None:
                text = text + slots[field][rows]
        out[rows] = text
    return out


def join(*parts: np.ndarray, sep: str = " ") -> np.ndarray:
    """Join per-row parts, skipping empty ones (no doubled separators)."""
    out = np.full(len(parts[0]), "", dtype=object)
    for part in parts:
        part = np.asarray(part, dtype=object)
        nonempty = part != ""
        glue = np.where((out != "") & nonempty, sep, "").astype(object)
        out = out + glue + part
    return out


def _factorize(values: np.ndarray) -> tuple[np.ndarray, list[str]]:
    uniques, codes = np.unique(values.astype(str), return_inverse=True)
    return codes, [str(u) for u in uniques]
