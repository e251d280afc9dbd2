"""A SQLite cache of text scores and embeddings, keyed by a hash of the text and the model, so a
rerun scores only messages it has not seen. Lives in the data folder by default."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS text_scores (
    model TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    label TEXT NOT NULL,
    score REAL NOT NULL,
    p_negative REAL NOT NULL,
    p_neutral REAL NOT NULL,
    p_positive REAL NOT NULL,
    embedding BLOB,
    PRIMARY KEY (model, text_hash)
)
"""
COLUMNS = ("label", "score", "p_negative", "p_neutral", "p_positive", "embedding")


def text_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


class TextCache:
    """`get` returns what is known for a batch of hashes; `put` stores new rows in one transaction."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # shared by the API's worker threads (one lock) and processes (WAL, a busy timeout)
        self._conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        self._lock = threading.Lock()
        self._conn.execute("PRAGMA journal_mode=WAL")
        # with WAL: durable across crashes of the process, no fsync per write
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(SCHEMA)
        self._conn.commit()

    def get(self, model: str, hashes: Iterable[str]) -> dict[str, tuple]:
        with self._lock:
            return self._get(model, list(hashes))

    def _get(self, model: str, hashes: list[str]) -> dict[str, tuple]:
        found: dict[str, tuple] = {}
        for start in range(0, len(hashes), 900):  # SQLite's limit on bound parameters
            chunk = hashes[start : start + 900]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT text_hash, {', '.join(COLUMNS)} FROM text_scores WHERE model = ? AND text_hash IN ({marks})",
                [model, *chunk],
            )
            for row in rows:
                found[row[0]] = row[1:]
        return found

    def put(self, model: str, rows: list[tuple[str, str, float, float, float, float, np.ndarray | None]]) -> None:
        with self._lock, self._conn:
            self._conn.executemany(
                "INSERT OR REPLACE INTO text_scores VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (model, h, label, s, pn, pu, pp, None if e is None else np.asarray(e, dtype=np.float16).tobytes())
                    for h, label, s, pn, pu, pp, e in rows
                ],
            )

    def count(self, model: str | None = None) -> int:
        if model is None:
            return self._conn.execute("SELECT COUNT(*) FROM text_scores").fetchone()[0]
        return self._conn.execute("SELECT COUNT(*) FROM text_scores WHERE model = ?", (model,)).fetchone()[0]

    def close(self) -> None:
        self._conn.close()
