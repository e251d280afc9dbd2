"""serving layer (see docs/design.md)."""
