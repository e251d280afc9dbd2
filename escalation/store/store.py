"""The Store: one transaction per public method (see escalation/store/__init__.py), its parts one module each."""

from __future__ import annotations

from escalation.store.clock import Clock
from escalation.store.lifecycle import Lifecycle
from escalation.store.outbox import Outbox
from escalation.store.recording import Recording, RecordResult
from escalation.store.users import USERNAME, Users


class Store(Recording, Lifecycle, Clock, Outbox, Users):
    """The operational store on a SQLite file or PostgreSQL database; tables are created if missing.

    `url`: `sqlite:///path.db`, a bare path (SQLite), or `postgresql+psycopg://user:pw@host/db`.
    `policy`: cooldown and alert routing used by `record()` (defaults: EscalationPolicy()).
    """


__all__ = ["USERNAME", "RecordResult", "Store"]
