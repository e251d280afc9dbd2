"""Feature families and the feature dictionary.

A family is a builder `(context) -> DataFrame` (one row per snapshot, in snapshot order) plus the
specs of the columns it makes. Families register themselves here, so a new family (the text
signals, say) plugs in without touching the panel builder. The dictionary (name, family, unit,
description, sentence template) is what explanations and reports use to speak plain language.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Literal

import pandas as pd

if TYPE_CHECKING:
    from features.context import FeatureContext

Unit = Literal["count", "days", "hours", "users", "minutes", "ratio", "pct_change", "pct_per_week", "usd", "score", "flag", "category", "features"]


@dataclass(frozen=True)
class FeatureSpec:
    """One column of the panel, as users and explanations see it.

    `template` is a sentence with the account's own value; placeholders: {value} (as stored),
    {pct} (abs(value) x 100, rounded), {direction} ("up"/"down"), {n} (rounded value).
    `missing` says what NaN means for this feature.
    """

    name: str
    family: str
    unit: Unit
    description: str
    template: str
    missing: str = ""
    kind: Literal["numeric", "categorical"] = "numeric"

    def sentence(self, value: object) -> str:
        """The template filled with a value (used by explanations)."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return f"{self.description}: unknown" + (f" ({self.missing})" if self.missing else "")
        if self.kind == "categorical":
            return self.template.format(value=value)
        v = float(value)
        return self.template.format(
            value=round(v, 2),
            pct=round(abs(v) * 100),
            direction="up" if v >= 0 else "down",
            n=round(v),
        )


@dataclass
class Family:
    name: str
    description: str
    build: Callable[[FeatureContext], pd.DataFrame]
    specs: list[FeatureSpec] = field(default_factory=list)
    #: input tables the family reads (for documentation and for skipping when absent)
    tables: tuple[str, ...] = ()


_FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Add (or replace) a family; its specs must carry its name."""
    bad = [s.name for s in family.specs if s.family != family.name]
    if bad:
        raise ValueError(f"family {family.name!r}: specs {bad} name another family")
    _FAMILIES[family.name] = family
    return family


def families() -> list[Family]:
    """Registered families, built-in ones first (importing `features.families` registers them)."""
    import features.families  # noqa: F401  (registration happens on first use, not at package import)

    return list(_FAMILIES.values())


def feature_specs() -> dict[str, FeatureSpec]:
    return {spec.name: spec for fam in families() for spec in fam.specs}


def feature_dictionary() -> list[dict]:
    """The dictionary written as feature_dictionary.json: one entry per feature."""
    return [asdict(spec) for fam in families() for spec in fam.specs]


def spec(name: str, family: str, unit: Unit, description: str, template: str, missing: str = "", kind: str = "numeric") -> FeatureSpec:
    return FeatureSpec(name, family, unit, description, template, missing, kind)  # type: ignore[arg-type]
