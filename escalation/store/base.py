"""The store's database and transactions, on which every part of the Store (escalation/store/store.py) builds."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from escalation.policy import EscalationPolicy
from escalation.store.database import _create_engine, _database_url, _upgrade


class StoreBase:
    """The database behind a Store: its engine (the schema upgraded on opening), the policy, and one
    transaction per public method (`_transaction`), writers of one dedupe key serialised (`_lock_key`)."""

    def __init__(self, url: str | Path, policy: EscalationPolicy | None = None):
        self.url = _database_url(url)
        self.policy = policy or EscalationPolicy()
        self.engine = _create_engine(self.url)
        _upgrade(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    def _lock_key(self, session: Session, key: str) -> None:
        """Serialise writers of one dedupe key (PostgreSQL; SQLite is serialised by BEGIN IMMEDIATE)."""
        if self.engine.dialect.name == "postgresql":
            lock_id = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
            session.execute(select(func.pg_advisory_xact_lock(lock_id)))
