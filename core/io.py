"""Atomic writes: every output is written to a temporary path next to its target, then renamed.

A run that fails half-way therefore leaves either the previous output or nothing, never a
half-written file, and never touches anything the user gave as input.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from core.errors import InputError


def _temp_sibling(target: Path, suffix: str = "") -> Path:
    return target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}{suffix}")


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary file path; on success it replaces `target` in one rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(target)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary directory; on success it takes the place of `target`.

    An existing `target` is moved aside first and removed only after the new one is in place,
    so a failure at any point leaves the old output intact.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        old = None
        if target.exists():
            old = _temp_sibling(target, ".old")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_parquet(frame: pd.DataFrame, target: str | os.PathLike[str]) -> Path:
    """Write one DataFrame as a Parquet file, atomically."""
    target = Path(target)
    with atomic_path(target) as tmp:
        frame.to_parquet(tmp, index=False)
    return target


def write_json(payload: Any, target: str | os.PathLike[str]) -> Path:
    """Write JSON (UTF-8, indented, stable key order), atomically."""
    target = Path(target)
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    return target


@contextlib.contextmanager
def staged_output(out_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a hidden staging folder inside `out_dir`; on success move its entries into `out_dir`.

    Everything is written to the staging folder first, so a failure leaves `out_dir` as it was.
    On success each staged file or folder replaces the entry of the same name (one rename each);
    other entries of `out_dir` (the user's own files) are left alone.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out_dir))
    try:
        yield staging
        for entry in sorted(staging.iterdir()):
            target = out_dir / entry.name
            if entry.is_dir():
                with atomic_dir(target) as tmp:
                    tmp.rmdir()
                    os.replace(entry, tmp)
            else:
                os.replace(entry, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def read_user_table(path: Path, flag: str) -> pd.DataFrame:
    """A user's CSV or Parquet file as a DataFrame; errors name the flag and the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{flag} {path}: no such file; expected a .csv or .parquet file")
    try:
        return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except Exception as exc:  # the parser's own message, with the file named
        raise InputError(f"{flag} {path}: could not read it: {exc}") from exc
