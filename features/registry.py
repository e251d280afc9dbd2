"""Feature families and the feature dictionary.

A family is a builder `(context) -> DataFrame` (one row per snapshot, in snapshot order) plus the
specs of the columns it makes. The families are listed in one place, features/families/__init__.py
(`FAMILIES`), so a new family (the text signals, say) plugs in without touching the panel builder. The dictionary (name, family, unit,
description, sentence template) is what explanations and reports use to speak plain language.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Literal, SupportsFloat

import pandas as pd

if TYPE_CHECKING:
    from features.context import FeatureContext

#: What CS can act on. A driver is behaviour that can change (usage, support, effort, sentiment,
#: surveys, recent events); context is who the account is (segment, industry, plan, billing, ARR
#: level, tenure, renewal date, the age of past events): shown beside the reasons, never as one.
Role = Literal["driver", "context"]
Unit = Literal[
    "count",
    "days",
    "hours",
    "users",
    "minutes",
    "ratio",
    "pct_change",
    "pct_per_week",
    "usd",
    "score",
    "flag",
    "category",
    "features",
]


@dataclass(frozen=True)
class FeatureSpec:
    """One column of the panel, as users and explanations see it.

    `template` is a sentence with the account's own value; placeholders: {value} (three significant
    figures at most; beside {direction}, its size), {pct} (abs(value) x 100, rounded), {direction}
    ("up"/"down"), {n} (rounded, thousands separated; the noun after it singular for one).
    `missing` says what NaN means for this feature. `baseline` names the feature holding this
    one's change against the account's own prior 90 days (a reason then says what it was before).
    """

    name: str
    family: str
    unit: Unit
    description: str
    template: str
    missing: str = ""
    kind: Literal["numeric", "categorical"] = "numeric"
    role: Role = "driver"
    baseline: str | None = None

    def sentence(self, value: SupportsFloat | str | None) -> str:
        """The template filled with a value (used by explanations)."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return f"{self.description}: unknown" + (f" ({self.missing})" if self.missing else "")
        if self.kind == "categorical":
            return self.template.format(value=value)
        v = float(value)
        written = _plain(abs(v) if "{direction}" in self.template else v)  # "down 0.3", not "down -0.3"
        template = self.template
        if round(v) == 1 and "{n}" in template:
            template = _singular(template, "{n}", within=3)
        elif written == "1" and "{value} " in template:
            template = _singular(template, "{value}", within=1)  # "every 1 day", not "1 days"
        return template.format(
            value=written, pct=round(abs(v) * 100), direction="up" if v >= 0 else "down", n=f"{round(v):,}"
        )

    def figure(self, value: SupportsFloat) -> str:
        """Another number of this feature (the account's past, a typical account) written as the
        template writes the account's own: whole where it has {n} (below 10, one decimal where a
        median falls between two whole numbers: 6.5), else three significant figures, as {value}."""
        v = float(value)
        if "{n}" in self.template:
            return f"{round(v):,}" if abs(v) >= 10 else f"{v:.1f}".removesuffix(".0")
        return _plain(v)


#: a plural noun: a final s after a letter other than s, i or u ("tickets", not "access" or "status")
_PLURAL = re.compile(r"[a-z-]*[a-hj-rt-z]s")


def _singular(template: str, placeholder: str, within: int) -> str:
    """The template for one: the first plural noun among the `within` words after `placeholder`
    loses its s ("1 ticket repeating", "1 critical moment in 90 days", "last login 1 day ago")."""
    head, n, tail = template.partition(placeholder)
    words = tail.split(" ")
    for i, word in enumerate(words[1 : within + 1], start=1):
        if _PLURAL.fullmatch(word):
            words[i] = word[:-1]
            break
    return head + n + " ".join(words)


def _plain(value: float) -> str:
    """Three significant figures at most, no trailing zeros: 3.07, 12.1, 140, 1,234."""
    digits = 2 if abs(value) < 10 else 1 if abs(value) < 100 else 0
    text = f"{value:,.{digits}f}"
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return "0" if text == "-0" else text


@dataclass
class Family:
    name: str
    description: str
    build: Callable[[FeatureContext], pd.DataFrame]
    specs: list[FeatureSpec] = field(default_factory=list)
    #: input tables the family's features come from: when every one of them is absent or empty,
    #: the family has no data and its features are null (not zero)
    tables: tuple[str, ...] = ()
    #: the spec of a column the family makes from the data itself (the usage family's extra
    #: measures), by name; None for a name it does not make
    dynamic: Callable[[str], FeatureSpec | None] | None = None

    def __post_init__(self) -> None:
        bad = [s.name for s in self.specs if s.family != self.name]
        if bad:
            raise ValueError(f"family {self.name!r}: specs {bad} name another family")

    def makes(self, name: str) -> FeatureSpec | None:
        return self.dynamic(name) if self.dynamic is not None else None


def families() -> list[Family]:
    """The built-in families in panel order (`FAMILIES` of features/families/__init__.py)."""
    # imported here, not at the top: each family module imports this one for Family and spec
    from features.families import FAMILIES

    return list(FAMILIES)


class FeatureSpecs(dict):
    """Specs by feature name; a column a family makes from the data (an extra usage measure) is
    looked up by its name, so code that reads specs never needs to know which columns a panel has."""

    def _dynamic(self, name: object) -> FeatureSpec | None:
        if not isinstance(name, str):
            return None
        return next((spec for fam in families() if (spec := fam.makes(name)) is not None), None)

    def __missing__(self, name: str) -> FeatureSpec:
        spec = self._dynamic(name)
        if spec is None:
            raise KeyError(name)
        return spec

    def __contains__(self, name: object) -> bool:
        return dict.__contains__(self, name) or self._dynamic(name) is not None

    def get(self, name: str, default: FeatureSpec | None = None) -> FeatureSpec | None:  # type: ignore[override]
        return self[name] if name in self else default  # noqa: SIM401  (this is get(): self.get would recurse)


def feature_specs() -> FeatureSpecs:
    return FeatureSpecs({spec.name: spec for fam in families() for spec in fam.specs})


def feature_dictionary(columns: Iterable[str] = (), notes: dict[str, str] | None = None) -> list[dict]:
    """The dictionary written as feature_dictionary.json: one entry per feature.

    `columns`: the panel's columns, for the features a family makes from the data; `notes`: by
    family, why its features are null (no data), added to each of its entries."""
    notes = notes or {}
    specs = feature_specs()
    names = list(specs) + [c for c in columns if c not in dict.keys(specs) and c in specs]
    return [
        asdict(specs[name]) | ({"note": notes[specs[name].family]} if specs[name].family in notes else {})
        for name in names
    ]


def spec(
    name: str,
    family: str,
    unit: Unit,
    description: str,
    template: str,
    missing: str = "",
    kind: str = "numeric",
    *,
    role: Role = "driver",
    baseline: str | None = None,
) -> FeatureSpec:
    return FeatureSpec(name, family, unit, description, template, missing, kind, role, baseline)  # type: ignore[arg-type]
