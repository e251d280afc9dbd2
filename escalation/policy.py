"""The escalation policy shared by support and CS (docs/escalation-practice.md), as validated configuration.

The policy is escalation.yaml of the platform's configuration (core/config/escalation.py defines it
and its defaults; core/config/escalation.yaml ships them). An unknown key or an out-of-range value
is an error naming the file and the key. The policy's version is a hash of its content, recorded
with every decision, so an audit can tell which rules were in force.
"""

from __future__ import annotations

from pathlib import Path

from core.config import load_section
from core.config.escalation import (
    Alerts,
    BotConfidence,
    Effort,
    EscalationPolicy,
    HardTriggers,
    Holdout,
    Monitoring,
    Route,
    Sentiment,
    Value,
    Windows,
)

__all__ = [
    "Alerts",
    "BotConfidence",
    "Effort",
    "EscalationPolicy",
    "HardTriggers",
    "Holdout",
    "Monitoring",
    "Route",
    "Sentiment",
    "Value",
    "Windows",
    "load_policy",
]


def load_policy(config_dir: Path | str | None) -> EscalationPolicy:
    """escalation.yaml of `config_dir` (the shipped one when it has none); errors name the file, the
    key and what was expected. An entry point that loads the whole configuration
    (core.config.load_config) takes the policy from it instead."""
    policy: EscalationPolicy = load_section(config_dir, "escalation")
    return policy
