"""escalation layer (see docs/design.md)."""
