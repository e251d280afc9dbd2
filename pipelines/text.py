"""Entry points for the text signals that read and write files: retrain the sentiment head from a
user's labelled messages, score a file. (Loading the model and the cache from settings is the text
runtime's: text/loading.py.)"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from core.errors import InputError
from core.io import atomic_path, read_user_table
from core.settings import Settings
from features.text.sentiment import score_texts
from text.cache import TextCache
from text.loading import route_below, text_encoder
from text.sentiment import STATIC_C, SentimentModel, cross_validate_head, fit_head, normalise_labels
from text.static import StaticEncoder


def _column(frame: pd.DataFrame, column: str, flag: str, path: Path) -> pd.Series:
    if column not in frame.columns:
        raise InputError(f"{flag} {column!r}: no such column in {path} (columns: {', '.join(map(str, frame.columns))})")
    return frame[column]


def train_sentiment(
    labels: Path,
    out: Path,
    *,
    text_column: str = "text",
    label_column: str = "label",
    folds: int = 5,
    settings: Settings,
) -> dict:
    """Retrain the head on labelled messages; report cross-validated accuracy and macro-F1; `settings`:
    the entry point's (the encoder and its cache)."""
    started = time.perf_counter()
    frame = read_user_table(labels, "--labels")
    text = _column(frame, text_column, "--text-column", labels).astype("str")
    y = normalise_labels(_column(frame, label_column, "--label-column", labels), label_column)
    counts = y.value_counts()
    if len(counts) < 3 or counts.min() < folds:
        raise InputError(
            f"--labels {labels}: need at least {folds} messages of each label (negative, neutral, positive); got {counts.to_dict()}"
        )
    encoder = text_encoder(settings)
    static = StaticEncoder(encoder)
    embeddings, fixed = encoder.embed(text.tolist()), static.embed(text.tolist())
    metrics = cross_validate_head(
        embeddings,
        text.tolist(),
        y,
        encoder.key,
        folds=folds,
        **(
            {}
            if settings.text_encoder == "transformer"
            else {"static": fixed, "route_below": route_below(settings.text_encoder)}
        ),
    )
    head = fit_head(embeddings, text.tolist(), y, encoder.key)
    # both heads always: CHURN_TEXT_ENCODER can change later
    head.static = fit_head(fixed, text.tolist(), y, static.key, c=STATIC_C)
    head.info = {
        "trained_on": labels.name,
        "messages": len(y),
        "labels": counts.to_dict(),
        "cv": metrics,
        "text_encoder": settings.text_encoder,
    }
    head.save(out)
    return {
        "head": str(out),
        "messages": len(y),
        "labels": counts.to_dict(),
        **{f"cv_{k}": v for k, v in metrics.items()},
        "seconds": round(time.perf_counter() - started, 2),
    }


def score_file(source: Path, out: Path, *, text_column: str, model: SentimentModel, cache: TextCache | None) -> dict:
    """Add `label` and `score` (in [-1, 1]) to every row of a CSV/Parquet file; write CSV or Parquet by `out`'s suffix."""
    started = time.perf_counter()
    frame = read_user_table(source, "--input")
    text = _column(frame, text_column, "--text-column", source)
    before = cache.count(model.key) if cache is not None else 0
    scores, _ = score_texts(text.tolist(), model, cache)
    result = frame.assign(label=scores["label"].to_numpy(), score=scores["score"].to_numpy())
    with atomic_path(out) as tmp:
        result.to_parquet(tmp, index=False) if out.suffix == ".parquet" else result.to_csv(tmp, index=False)
    newly = (cache.count(model.key) - before) if cache is not None else len(set(text))
    return {
        "input": str(source),
        "out": str(out),
        "rows": len(result),
        "newly_scored": newly,
        "labels": result["label"].value_counts().to_dict(),
        "model": model.key,
        "seconds": round(time.perf_counter() - started, 2),
    }


__all__ = ["score_file", "train_sentiment"]
