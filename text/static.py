"""Static sentence embeddings distilled from the transformer encoder: a table lookup instead of a
forward pass, so the text path is fast on any CPU (it needs no matrix instructions at all).

The recipe is model2vec's, made here from the shipped weights with no data and no extra package:
every vocabulary token goes through the transformer alone ("[CLS] token [SEP]", mean-pooled), the
table is reduced by PCA to DIMENSION columns, and each row is weighted down by how frequent its
token is (SIF weights, the token's frequency estimated from its rank by Zipf's law: a WordPiece
vocabulary is roughly ordered by frequency). A sentence's embedding is the mean of its tokens'
rows, L2-normalised. The table is made once per model (docs/benchmarks.md times it) and kept beside
the ONNX export, keyed by the weights, written aside and renamed. Once it is made, embedding needs
only the teacher's tokenizer (`TextEncoder.token_ids`): the transformer itself is never loaded.

A token's row does not depend on the sentence it is in, so a sentence's embedding is the same
however texts are batched (the API's few messages and a batch job's millions agree exactly).
What is lost is word order and context: on the shipped corpus a sentiment head on these
embeddings reaches macro-F1 0.83 against the transformer's 0.87, which is why sentiment runs as a
cascade (text/sentiment.py) and the transformer sees only the sentences this one is
unsure of.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from text.encoder import TextEncoder, make_once, resolve_model, weights_digest

DIMENSION = 256
#: SIF weight a / (a + p(token)); 1e-4 was best for the sentiment head on the corpus among 1e-3..1e-5
SIF = 1e-4
_VERSION = 1  # bump when the recipe changes: old tables are then not reused
_BATCH = 2048
log = logging.getLogger("churn.text")
_MAKING = threading.Lock()  # threads that ask at once make the table once (processes: make_once's lock file)


class StaticEncoder:
    """Mean of distilled token vectors, L2-normalised; `embed` and `key` as TextEncoder has them."""

    #: cosine thresholds in this embedding space (features/text/signals.py), calibrated as the
    #: transformer's were, on simulated tickets against the simulator's count of rephrasings
    rephrase_similarity = 0.76
    repeat_similarity = 0.87

    def __init__(self, teacher: TextEncoder) -> None:
        self.teacher = teacher
        self.max_length = teacher.max_length
        self._table: np.ndarray | None = None

    @property
    def key(self) -> str:
        return f"{self.teacher.key}:static{DIMENSION}-v{_VERSION}"

    def table(self) -> np.ndarray:
        """The token table [vocabulary, DIMENSION] float32, made now if it is not kept yet."""
        with _MAKING:
            if self._table is None:
                path, local = resolve_model(self.teacher.model_name)
                digest = weights_digest(Path(path)) if local else self.teacher.model_name.replace("/", "--")
                target = (
                    self.teacher.export_folder()
                    / f"{self.teacher.key.split(':')[0]}-{digest}-static{DIMENSION}-v{_VERSION}.npy"
                )
                make_once(target, lambda: _save(distil(self.teacher), target))
                self._table = np.load(target)
        return self._table

    def load(self) -> None:
        """The table (made now if it is not kept yet) and the tokenizer, now rather than on the first text."""
        self.table()
        self.teacher.token_ids([])

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embeddings [len(texts), DIMENSION] as float32, in the order given (a blank text: zeros)."""
        table = self.table()
        ids = self.teacher.token_ids(list(texts))  # the tokenizer alone: the teacher's model stays unloaded
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        out = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        some = lengths > 0
        if some.any():
            flat = np.fromiter((i for row in ids for i in row), dtype=np.int64, count=int(lengths.sum()))
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])[some]
            out[some] = np.add.reduceat(table[flat], starts, axis=0) / lengths[some, None]
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def distil(teacher: TextEncoder) -> np.ndarray:
    """Every vocabulary token through the teacher, PCA to DIMENSION, SIF-weighted by rank."""
    from sklearn.decomposition import PCA

    started = time.perf_counter()
    tokenizer = teacher.tokenizer()
    size = len(tokenizer)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    if cls is None or sep is None:
        cls = sep = tokenizer.pad_token_id or 0
    hidden = np.zeros((size, teacher.dimension), dtype=np.float32)
    for start in range(0, size, _BATCH):
        tokens = np.arange(start, min(start + _BATCH, size))
        batch = {
            "input_ids": np.stack([np.full(len(tokens), cls), tokens, np.full(len(tokens), sep)], axis=1),
            "attention_mask": np.ones((len(tokens), 3), dtype=np.int64),
            "token_type_ids": np.zeros((len(tokens), 3), dtype=np.int64),
        }
        hidden[tokens] = teacher.hidden(batch).mean(axis=1)
    # deterministic: signs fixed by sklearn's svd_flip
    reduced = PCA(DIMENSION, svd_solver="full").fit_transform(hidden)
    zipf = 1.0 / np.arange(1, size + 1)
    weight = SIF / (SIF + zipf / zipf.sum())
    log.info(
        "text encoder %s: static table of %d tokens distilled in %.0f s",
        teacher.model_name,
        size,
        time.perf_counter() - started,
    )
    return (reduced * weight[:, None]).astype(np.float32)


def _save(table: np.ndarray, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}-", suffix=".npy")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, table)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


__all__ = ["DIMENSION", "StaticEncoder", "distil"]
