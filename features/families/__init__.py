"""Built-in feature families; importing this package registers them (in this order)."""

from features.families import business, experience, risk_events, support, surveys, text, usage  # noqa: F401
