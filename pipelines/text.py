"""Entry points for the text signals: build the sentiment model from settings, retrain its head
from a user's labelled messages, score a file. (File and settings access lives here, not in features/.)"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from core.errors import InputError
from core.io import atomic_path, read_user_table
from core.settings import Settings, load_settings
from features.text.cache import TextCache
from features.text.encoder import TextEncoder
from features.text.sentiment import CORPUS, ROUTE_BELOW, SHIPPED_HEAD, STATIC_C, SentimentHead, SentimentModel, cross_validate_head, fit_head, normalise_labels, score_texts
from features.text.static import StaticEncoder

log = logging.getLogger("churn.text")


def head_path(settings: Settings) -> Path:
    """Where `sentiment-train` writes, and where the model looks first."""
    return settings.sentiment_head or settings.data_dir / "models" / "sentiment_head.json"


def text_encoder(settings: Settings, *, threads: int | None = None) -> TextEncoder:
    """The transformer encoder as configured (runtime, export folder); `threads` bounds it (default: every core)."""
    return TextEncoder(threads=threads, runtime=settings.text_runtime, export_dir=settings.encoder_cache)


def load_sentiment_model(settings: Settings, *, threads: int | None = None) -> SentimentModel:
    """The configured sentiment model (CHURN_TEXT_ENCODER); `threads` bounds the transformer's (default: every core)."""
    encoder = text_encoder(settings, threads=threads)
    if settings.sentiment_model != "default":
        return SentimentModel(encoder, classifier=settings.sentiment_model)
    path = head_path(settings)
    if settings.sentiment_head is not None and not path.is_file():
        raise InputError(f"CHURN_SENTIMENT_HEAD {path}: no such file; expected a head written by `churn sentiment-train`")
    head = SentimentHead.load(path if path.is_file() else SHIPPED_HEAD)
    if settings.text_encoder == "transformer":
        return SentimentModel(encoder, head)
    if head.static is None:  # trained before the cascade: it still scores, with the transformer for every sentence
        log.warning("sentiment head %s has no static head for CHURN_TEXT_ENCODER=%s: every sentence goes through the transformer; "
                    "retrain it with `churn sentiment-train` for the cascade's speed", path, settings.text_encoder)
        return SentimentModel(encoder, head)
    return SentimentModel(encoder, head, static=StaticEncoder(encoder), route_below=_route_below(settings))


def _route_below(settings: Settings) -> float:
    """The cascade's threshold for CHURN_TEXT_ENCODER: `static` never sends a sentence on to the transformer."""
    return 0.0 if settings.text_encoder == "static" else ROUTE_BELOW


def open_cache(settings: Settings) -> TextCache:
    return TextCache(settings.text_cache or settings.data_dir / "text_cache.sqlite")


#: Models and cache connections opened in this process, by TextSource.key: a Dask worker loads
#: each model once, however many blocks it runs.
_MODELS: dict[tuple[str, str], SentimentModel] = {}
_CACHES: dict[str, TextCache] = {}
_OPENING = threading.Lock()  # feature blocks on threads ask at once: one model, one connection


class TextSource:
    """The sentiment model and text cache of `settings`, loaded on first use and then kept for the
    life of the process. Shipped to another process (a Dask worker running feature blocks) it
    carries only the settings, and that process loads its own model and opens the same cache (the
    cache is safe to share between processes)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model_key = (settings.sentiment_model, str(head_path(settings)))
        self.cache_key = str(settings.text_cache or settings.data_dir / "text_cache.sqlite")

    def __getstate__(self) -> dict:
        return {"settings": self.settings}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["settings"])

    def get(self) -> tuple[SentimentModel, TextCache]:
        with _OPENING:
            if self.model_key not in _MODELS:
                model = load_sentiment_model(self.settings)
                model.load()  # now, under the lock, not in each thread's first call
                _MODELS[self.model_key] = model
            if self.cache_key not in _CACHES:
                _CACHES[self.cache_key] = open_cache(self.settings)
            return _MODELS[self.model_key], _CACHES[self.cache_key]

    def close(self) -> None:
        """Close this process's cache connection (the model stays loaded for the next run)."""
        cache = _CACHES.pop(self.cache_key, None)
        if cache is not None:
            cache.close()


@contextlib.contextmanager
def text_source(settings: Settings, data: Path, enabled: bool = True) -> Iterator[TextSource | None]:
    """The TextSource of a run on `data` (the cache defaults to that folder), closed after it; None when text is off."""
    source = TextSource(settings.model_copy(update={"data_dir": Path(data)})) if enabled else None
    try:
        yield source
    finally:
        if source is not None:
            source.close()


def _column(frame: pd.DataFrame, column: str, flag: str, path: Path) -> pd.Series:
    if column not in frame.columns:
        raise InputError(f"{flag} {column!r}: no such column in {path} (columns: {', '.join(map(str, frame.columns))})")
    return frame[column]


def train_sentiment(labels: Path, out: Path, *, text_column: str = "text", label_column: str = "label", folds: int = 5,
                    settings: Settings | None = None) -> dict:
    """Retrain the head on labelled messages; report cross-validated accuracy and macro-F1."""
    started = time.perf_counter()
    frame = read_user_table(labels, "--labels")
    text = _column(frame, text_column, "--text-column", labels).astype("str")
    y = normalise_labels(_column(frame, label_column, "--label-column", labels), label_column)
    counts = y.value_counts()
    if len(counts) < 3 or counts.min() < folds:
        raise InputError(f"--labels {labels}: need at least {folds} messages of each label (negative, neutral, positive); got {counts.to_dict()}")
    settings = settings or load_settings()
    encoder = text_encoder(settings)
    static = StaticEncoder(encoder)
    embeddings, fixed = encoder.embed(text.tolist()), static.embed(text.tolist())
    metrics = cross_validate_head(embeddings, text.tolist(), y, encoder.key, folds=folds,
                                  **({} if settings.text_encoder == "transformer" else {"static": fixed, "route_below": _route_below(settings)}))
    head = fit_head(embeddings, text.tolist(), y, encoder.key)
    head.static = fit_head(fixed, text.tolist(), y, static.key, c=STATIC_C)  # both heads always: CHURN_TEXT_ENCODER can change later
    head.info = {"trained_on": labels.name, "messages": len(y), "labels": counts.to_dict(), "cv": metrics, "text_encoder": settings.text_encoder}
    head.save(out)
    return {"head": str(out), "messages": len(y), "labels": counts.to_dict(), **{f"cv_{k}": v for k, v in metrics.items()}, "seconds": round(time.perf_counter() - started, 2)}


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
    return {"input": str(source), "out": str(out), "rows": len(result), "newly_scored": newly, "labels": result["label"].value_counts().to_dict(),
            "model": model.key, "seconds": round(time.perf_counter() - started, 2)}


__all__ = ["CORPUS", "TextSource", "text_source", "load_sentiment_model", "open_cache", "score_file", "train_sentiment"]
