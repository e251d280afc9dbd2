"""Database URLs as users give them: a SQLAlchemy URL, or a bare path meaning a SQLite file."""

from __future__ import annotations

from pathlib import Path

SQLITE = "sqlite:///"


def absolute_url(url: str) -> str:
    """`url` with a relative sqlite path made absolute: `sqlite:///x.db` depends on the folder a
    command runs from, and a server or a cache key must not."""
    if url.startswith(SQLITE) and not url.startswith(SQLITE + "/"):
        return SQLITE + str(Path(url.removeprefix(SQLITE)).resolve())
    return url


def sqlite_path(url: str | Path) -> Path | None:
    """The file a SQLite URL (or a bare path) names; None for an in-memory or a server database."""
    text = str(url)
    if "://" not in text:
        return Path(text).expanduser()
    if text.startswith(SQLITE) and ":memory:" not in text and len(text) > len(SQLITE):
        return Path(text.removeprefix(SQLITE)).expanduser()
    return None
