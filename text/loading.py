"""Loading the text runtime for an entry point: the sentiment model, the text cache, and a
TextSource that keeps both for the life of a process.

`sentiment_model` takes everything it needs as arguments; the functions taking a Settings object
are the one place where the settings (CHURN_SENTIMENT_MODEL, CHURN_SENTIMENT_HEAD, CHURN_TEXT_ENCODER,
CHURN_TEXT_RUNTIME, CHURN_ENCODER_CACHE, CHURN_TEXT_CACHE, CHURN_DATA_DIR) become those arguments,
shared by the API (serving/) and the batch commands (pipelines/)."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

from core.errors import InputError
from core.settings import Settings
from text.cache import TextCache
from text.encoder import DEFAULT_MODEL, TextEncoder
from text.sentiment import ROUTE_BELOW, SHIPPED_HEAD, SentimentHead, SentimentModel
from text.static import StaticEncoder

log = logging.getLogger("churn.text")


def head_path(settings: Settings) -> Path:
    """Where `sentiment-train` writes, and where the model looks first."""
    return settings.sentiment_head or settings.data_dir / "models" / "sentiment_head.json"


def cache_path(settings: Settings) -> Path:
    """The SQLite text cache: CHURN_TEXT_CACHE, else in the data folder."""
    return settings.text_cache or settings.data_dir / "text_cache.sqlite"


def route_below(mode: str) -> float:
    """The cascade's threshold for an encoder mode (CHURN_TEXT_ENCODER): `static` never sends a sentence on to the transformer."""
    return 0.0 if mode == "static" else ROUTE_BELOW


def text_encoder(settings: Settings, *, threads: int | None = None) -> TextEncoder:
    """The transformer encoder as configured (runtime, export folder); `threads` bounds it (default: every core)."""
    return TextEncoder(threads=threads, runtime=settings.text_runtime, export_dir=settings.encoder_cache)


def sentiment_model(
    encoder: TextEncoder, *, classifier: str = DEFAULT_MODEL, head: Path | None = None, mode: str = "cascade"
) -> SentimentModel:
    """The sentiment model on `encoder`: a Hugging Face `classifier` (a local path or hub id), else
    the head in the file `head` (None: the shipped head) as `mode` says ('cascade', 'transformer', 'static')."""
    if classifier != DEFAULT_MODEL:
        return SentimentModel(encoder, classifier=classifier)
    loaded = SentimentHead.load(head or SHIPPED_HEAD)
    if mode == "transformer":
        return SentimentModel(encoder, loaded)
    if loaded.static is None:  # trained before the cascade: it still scores, with the transformer for every sentence
        log.warning(
            "sentiment head %s has no static head for CHURN_TEXT_ENCODER=%s: every sentence goes through the transformer; "
            "retrain it with `churn sentiment-train` for the cascade's speed",
            head,
            mode,
        )
        return SentimentModel(encoder, loaded)
    return SentimentModel(encoder, loaded, static=StaticEncoder(encoder), route_below=route_below(mode))


def load_sentiment_model(settings: Settings, *, threads: int | None = None) -> SentimentModel:
    """The configured sentiment model (CHURN_TEXT_ENCODER); `threads` bounds the transformer's (default: every core)."""
    encoder = text_encoder(settings, threads=threads)
    if settings.sentiment_model != DEFAULT_MODEL:
        return sentiment_model(encoder, classifier=settings.sentiment_model)
    path = head_path(settings)
    if settings.sentiment_head is not None and not path.is_file():
        raise InputError(
            f"CHURN_SENTIMENT_HEAD {path}: no such file; expected a head written by `churn sentiment-train`"
        )
    return sentiment_model(encoder, head=path if path.is_file() else None, mode=settings.text_encoder)


def open_cache(settings: Settings) -> TextCache:
    return TextCache(cache_path(settings))


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
        self.cache_key = str(cache_path(settings))

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


__all__ = [
    "TextSource",
    "cache_path",
    "head_path",
    "load_sentiment_model",
    "open_cache",
    "route_below",
    "sentiment_model",
    "text_encoder",
    "text_source",
]
