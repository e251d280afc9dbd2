"""Build the snapshot panel from a data folder and write it (the I/O around features/)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import yaml
from pydantic import ValidationError

from core.contracts import load_tables
from core.errors import InputError
from core.io import atomic_dir, write_json
from features.context import FeatureParams
from features.panel import build_panel, parse_every
from features.registry import feature_dictionary


def load_feature_params(config_dir: Path) -> FeatureParams:
    """FeatureParams from `config_dir/features.yaml` (defaults when the file is absent)."""
    path = Path(config_dir) / "features.yaml"
    if not path.is_file():
        return FeatureParams()
    try:
        return FeatureParams(**(yaml.safe_load(path.read_text()) or {}))
    except ValidationError as exc:
        problems = "; ".join(f"key '{'.'.join(map(str, e['loc']))}': {e['msg']}" for e in exc.errors())
        raise InputError(f"{path}: {problems}") from None


def write_snapshots(panel: pd.DataFrame, out_dir: Path) -> Path:
    """`out_dir/snapshots/` as a Parquet data set, one file per cutoff, replaced atomically."""
    target = Path(out_dir) / "snapshots"
    with atomic_dir(target) as tmp:
        for cutoff, part in panel.groupby("cutoff", sort=True):
            part.to_parquet(tmp / f"cutoff={cutoff.date().isoformat()}.parquet", index=False)
    return target


def read_snapshots(features_dir: Path) -> pd.DataFrame:
    folder = Path(features_dir) / "snapshots"
    files = sorted(folder.glob("*.parquet"))
    if not files:
        raise InputError(f"--features {features_dir}: no snapshots/*.parquet; expected the output of `churn features`")
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def run_features(
    data: Path,
    out: Path,
    *,
    start: str | None = None,
    end: str | None = None,
    every: str = "30d",
    params: FeatureParams | None = None,
    progress: Callable[[str, float], None] | None = None,
) -> dict:
    """Load and validate `data`, build the panel, write snapshots/ and feature_dictionary.json."""
    started = time.perf_counter()
    parse_every(every)  # a bad flag fails before any data is read
    tables = load_tables(data)
    panel, summary = build_panel(tables.tables, start=start, end=end, every=every, params=params, progress=progress)
    write_snapshots(panel, out)
    write_json(feature_dictionary(), Path(out) / "feature_dictionary.json")
    summary.update(
        {"data": str(data), "out": str(out), "notes": tables.notes, "params": (params or FeatureParams()).model_dump(),
         "seconds": round(time.perf_counter() - started, 2)}
    )
    write_json(summary, Path(out) / "panel_summary.json")
    return summary
