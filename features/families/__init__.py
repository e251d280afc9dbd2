"""The built-in feature families, in the order their columns appear in the panel.

`FAMILIES` is the one list: a new family is a module here with its `Family`, added below; the
panel builder and the dictionary (features/registry.py) read it, nothing registers itself.
"""

from features.families import (
    business,
    experience,
    risk_events,
    support,
    surveys,
    text,
    usage,
)
from features.registry import Family

FAMILIES: tuple[Family, ...] = (
    business.FAMILY,
    experience.FAMILY,
    risk_events.FAMILY,
    *support.FAMILIES,  # support, effort, communication
    surveys.FAMILY,
    text.FAMILY,
    usage.FAMILY,
)
