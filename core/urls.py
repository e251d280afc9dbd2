"""Database URLs as users give them: a SQLAlchemy URL, or a bare path meaning a SQLite file."""

from __future__ import annotations

from pathlib import Path

SQLITE = "sqlite:///"


def sqlite_path(url: str | Path) -> Path | None:
    """The file a SQLite URL (or a bare path) names; None for an in-memory or a server database."""
    text = str(url)
    if "://" not in text:
        return Path(text).expanduser()
    if text.startswith(SQLITE) and ":memory:" not in text and len(text) > len(SQLITE):
        return Path(text.removeprefix(SQLITE)).expanduser()
    return None
