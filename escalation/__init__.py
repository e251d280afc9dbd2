"""escalation layer (see DESIGN.md)."""
