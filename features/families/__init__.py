"""Built-in feature families; importing this package registers them (in this order)."""

from features.families import business, risk_events, support, surveys, usage  # noqa: F401
