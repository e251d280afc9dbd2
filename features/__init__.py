"""features layer (see DESIGN.md)."""
