"""features layer (see docs/design.md)."""
