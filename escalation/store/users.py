"""The workspace's users: the store keeps them, the workspace and `churn users` hash and check the passwords."""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import (
    delete,
    select,
)
from sqlalchemy.exc import IntegrityError

from core.errors import InputError
from escalation.store.base import StoreBase
from escalation.store.schema import (
    ROLES,
    UTC,
    UserRow,
    row_dict,
    utc,
)

#: a username: letters, digits and . _ @ -, starting with a letter or digit (it goes in URLs and logs as is)
USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


class Users(StoreBase):
    """The workspace's users (username, name, role, password hash)."""

    # ------------------------------------------------------------------ workspace users

    def add_user(self, username: str, name: str, role: str, password_hash: str, now: dt.datetime | None = None) -> dict:
        """A new workspace user; an InputError naming the field for a bad value or a taken username."""
        row = _user_values(username, name, role, password_hash)
        now = utc(now) or dt.datetime.now(UTC)
        try:
            with self._transaction() as session:
                if session.get(UserRow, row["username"]) is not None:
                    raise InputError(
                        f"username {row['username']!r}: already a user; expected a new username "
                        "(`churn users set-password` changes a password)"
                    )
                session.add(UserRow(**row, created_at=now, updated_at=now))
        except IntegrityError:  # the same username added by another process meanwhile
            raise InputError(f"username {row['username']!r}: already a user; expected a new username") from None
        return self.user(row["username"]) or {}

    def user(self, username: str) -> dict | None:
        """One user's row (with its password hash), None when there is no such user."""
        with self._transaction() as session:
            row = session.get(UserRow, username)
            return None if row is None else row_dict(row)

    def users(self) -> list[dict]:
        """Every user, by username, with their password hash."""
        with self._transaction() as session:
            return [row_dict(row) for row in session.scalars(select(UserRow).order_by(UserRow.username))]

    def set_password(self, username: str, password_hash: str, now: dt.datetime | None = None) -> dict:
        """Replace a user's password hash (their sessions end: the workspace checks the hash they signed in with)."""
        if not password_hash:
            raise InputError("password_hash: expected the hash of a password, got nothing")
        with self._transaction() as session:
            row = session.get(UserRow, username)
            if row is None:
                raise InputError(f"username {username!r}: no such user; expected one listed by `churn users list`")
            row.password_hash, row.updated_at = password_hash, utc(now) or dt.datetime.now(UTC)
            return row_dict(row)

    def remove_user(self, username: str) -> None:
        """Delete a user (what they did stays in the audit trail under their name)."""
        with self._transaction() as session:
            removed = session.execute(delete(UserRow).where(UserRow.username == username))
            if removed.rowcount == 0:  # type: ignore[attr-defined]  # a DELETE's Result is a CursorResult
                raise InputError(f"username {username!r}: no such user; expected one listed by `churn users list`")


def _user_values(username: str, name: str, role: str, password_hash: str) -> dict:
    """A user's columns, checked: each bad one named with what was expected."""
    if not isinstance(username, str) or not USERNAME.fullmatch(username):
        raise InputError(
            f"username {username!r}: expected 1 to 64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"
        )
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > 256:
        raise InputError(
            f"name {name!r}: expected the person's name (as the data spells a CSM owner), 1 to 256 characters"
        )
    if role not in ROLES:
        raise InputError(f"role {role!r}: expected one of {', '.join(ROLES)}")
    if not password_hash:
        raise InputError("password_hash: expected the hash of a password, got nothing")
    return {"username": username, "name": name.strip(), "role": role, "password_hash": password_hash}
