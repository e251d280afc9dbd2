"""models layer (see docs/design.md)."""
