"""reports layer (see DESIGN.md)."""
