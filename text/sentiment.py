"""Message sentiment models: negative / neutral / positive with a continuous score in [-1, 1].

Default: a cascade of two logistic-regression heads trained on the project's labelled support
corpus (`text/corpus/sentiment.csv`): one on static embeddings distilled from the shipped MiniLM
(text/static.py, a table lookup), and one on MiniLM itself, which scores only the sentences the
first is unsure of (its most likely label below ROUTE_BELOW). The setting CHURN_TEXT_ENCODER picks
`cascade`, `transformer` (every sentence through MiniLM) or `static`. Any Hugging Face
sequence-classification model (local path or hub id) can replace the heads. Messages are scored
sentence by sentence through the text cache by features/text/sentiment.py.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.errors import ChurnError, InputError
from core.vocabulary import SENTIMENT_LABELS
from text.cache import text_hash
from text.encoder import TextEncoder, load_pretrained
from text.static import StaticEncoder

LABELS = SENTIMENT_LABELS
CORPUS = Path(__file__).parent / "corpus" / "sentiment.csv"
SHIPPED_HEAD = Path(__file__).parent / "corpus" / "sentiment_head.json"
ENCODERS = ("cascade", "transformer", "static")
#: The cascade sends a sentence to the transformer when the static head gives its most likely label
#: less than this. The static head's regularisation (STATIC_C, looser than the transformer head's)
#: makes it confident where it can be. Both chosen by 5-fold cross-validation on the corpus (3
#: seeds): macro-F1 0.859 with 16% of sentences sent on; at 0.6, 0.859 with 23%; at 0.5, 0.850.
ROUTE_BELOW = 0.55
STATIC_C = 4.0
_ALIASES = {
    "negative": "negative",
    "neg": "negative",
    "-1": "negative",
    "bad": "negative",
    "neutral": "neutral",
    "neu": "neutral",
    "0": "neutral",
    "positive": "positive",
    "pos": "positive",
    "1": "positive",
    "good": "positive",
}


def normalise_labels(values: pd.Series, column: str = "label") -> pd.Series:
    """Map label spellings (negative/neg/-1, neutral/neu/0, positive/pos/1) to LABELS."""
    text = values.astype("str").str.strip().str.lower().str.replace(r"\.0$", "", regex=True)
    out = text.map(_ALIASES)
    bad = out.isna()
    if bad.any():
        shown = ", ".join(repr(v) for v in values[bad].astype("str").unique()[:5])
        raise InputError(
            f"column '{column}': {int(bad.sum())} label(s) not understood ({shown}); expected "
            "negative/neutral/positive (or neg/neu/pos, -1/0/1)"
        )
    return out


TOKEN_PATTERN = r"(?u)\b[\w']+\b"  # keeps "don't", "isn't": negation lives in them
SMALL = 32  # below this many texts, plain Python beats pandas' per-call overhead


def _vectorizer(vocabulary: dict[str, int] | None = None):
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, token_pattern=TOKEN_PATTERN, vocabulary=vocabulary)


@dataclass
class SentimentHead:
    """Logistic regression over [sentence embedding, word 1-2-gram TF-IDF]; rows of `coef` follow LABELS.

    The embedding carries meaning; the n-grams carry what mean-pooled embeddings blur, above all
    negation ("not happy", "no complaints"): on the shipped corpus they lift 5-fold macro-F1 from
    0.85 to 0.88.
    """

    coef: np.ndarray
    intercept: np.ndarray
    encoder: str
    vocabulary: dict[str, int] = field(default_factory=dict)
    idf: np.ndarray = field(default_factory=lambda: np.zeros(0))
    info: dict = field(default_factory=dict)
    #: the cascade's first head, on static embeddings (None: a head written before the cascade)
    static: SentimentHead | None = None

    @cached_property
    def _ngrams(self):
        vec = _vectorizer(self.vocabulary)
        vec.idf_ = self.idf
        return vec

    @cached_property
    def _tokens(self) -> re.Pattern:
        return re.compile(TOKEN_PATTERN)

    def _ngram_logits(self, texts: Sequence[str], d: int) -> np.ndarray:
        """The n-gram block of the logits for a few texts: the vectoriser's TF-IDF (lowercase, word 1-2-grams
        of the vocabulary, 1 + log tf, idf, L2 norm) in plain Python, without its per-call checks."""
        out = np.zeros((len(texts), len(self.intercept)))
        for row, text in enumerate(texts):
            tokens = self._tokens.findall(text.lower())
            counts: dict[int, int] = {}
            for gram in (*tokens, *(f"{a} {b}" for a, b in itertools.pairwise(tokens))):
                j = self.vocabulary.get(gram)
                if j is not None:
                    counts[j] = counts.get(j, 0) + 1
            if counts:
                idx = np.fromiter(counts, dtype=np.int64, count=len(counts))
                weight = (1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(counts)))) * self.idf[
                    idx
                ]
                out[row] = self.coef[:, d + idx] @ (weight / np.linalg.norm(weight))
        return out

    def predict_proba(self, embeddings: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        d = embeddings.shape[1]
        logits = embeddings.astype(np.float64) @ self.coef[:, :d].T + self.intercept
        if (
            self.vocabulary
        ):  # the n-gram block of the weights: a live ticket's few texts in Python, else the sparse TF-IDF rows
            logits += (
                self._ngram_logits(texts, d)
                if len(texts) < SMALL
                else np.asarray(self._ngrams.transform(list(texts)) @ self.coef[:, d:].T)
            )
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    @cached_property
    def key(self) -> str:
        """Names the head's weights (the cache is keyed on it); computed once: hashing them costs ms."""
        digest = text_hash(json.dumps([self.coef.round(6).tolist(), self.intercept.round(6).tolist()]))[:12]
        return f"{self.encoder}+head-{digest}"

    def to_dict(self) -> dict:
        out = {
            "labels": list(LABELS),
            "coef": self.coef.round(7).tolist(),
            "intercept": self.intercept.tolist(),
            "encoder": self.encoder,
            "vocabulary": self.vocabulary,
            "idf": self.idf.round(7).tolist(),
            "info": self.info,
        }
        return out | ({"static": self.static.to_dict()} if self.static is not None else {})

    @classmethod
    def from_dict(cls, raw: dict) -> SentimentHead:
        if raw["labels"] != list(LABELS):
            raise ValueError(f"labels {raw['labels']}, expected {list(LABELS)}")
        return cls(
            np.asarray(raw["coef"]),
            np.asarray(raw["intercept"]),
            raw["encoder"],
            raw.get("vocabulary", {}),
            np.asarray(raw.get("idf", [])),
            raw.get("info", {}),
            cls.from_dict(raw["static"]) if raw.get("static") else None,
        )

    def save(self, path: str | Path) -> Path:
        from core.io import write_json

        return write_json(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | Path) -> SentimentHead:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"sentiment head {path}: {exc}") from None


def fit_head(
    embeddings: np.ndarray, texts: Sequence[str], labels: pd.Series, encoder: str, *, c: float = 2.0
) -> SentimentHead:
    import scipy.sparse as sp
    from sklearn.linear_model import LogisticRegression

    vec = _vectorizer()
    grams = vec.fit_transform(list(texts))
    clf = LogisticRegression(C=c, max_iter=3000, class_weight="balanced")
    clf.fit(sp.hstack([sp.csr_matrix(embeddings.astype(np.float64)), grams]).tocsr(), labels.to_numpy())
    order = [list(clf.classes_).index(label) for label in LABELS]
    vocabulary = {str(k): int(v) for k, v in vec.vocabulary_.items()}
    return SentimentHead(clf.coef_[order], clf.intercept_[order], encoder, vocabulary, vec.idf_)


def cross_validate_head(
    embeddings: np.ndarray,
    texts: Sequence[str],
    labels: pd.Series,
    encoder: str,
    *,
    folds: int = 5,
    seed: int = 0,
    static: np.ndarray | None = None,
    route_below: float = ROUTE_BELOW,
) -> dict:
    """Stratified k-fold accuracy and macro-F1 of the head (the encoders are fixed); with `static`
    embeddings, of the cascade (`routed`: the share of held-out texts the transformer scored)."""
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import StratifiedKFold

    rows = np.asarray(list(texts), dtype=object)
    y = labels.to_numpy()
    p = np.zeros((len(y), len(LABELS)))
    routed = np.zeros(len(y), dtype=bool)
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(embeddings, y):
        p[test] = fit_head(embeddings[train], rows[train], labels.iloc[train], encoder).predict_proba(
            embeddings[test], rows[test]
        )
        if static is not None:
            first = fit_head(static[train], rows[train], labels.iloc[train], encoder, c=STATIC_C).predict_proba(
                static[test], rows[test]
            )
            routed[test] = first.max(axis=1) < route_below
            p[test] = np.where(routed[test, None], p[test], first)
    pred = labels_of(p)
    out = {
        "folds": folds,
        "accuracy": float(accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, average="macro")),
    }
    return out | ({"routed": float(routed.mean())} if static is not None else {})


class SentimentModel:
    """Encoder + head, optionally behind a static first stage (the cascade, see the module's
    docstring), or a Hugging Face sequence-classification model."""

    def __init__(
        self,
        encoder: TextEncoder,
        head: SentimentHead | None = None,
        classifier: str | None = None,
        *,
        static: StaticEncoder | None = None,
        route_below: float = ROUTE_BELOW,
    ):
        if head is None and classifier is None:
            raise ValueError("a SentimentModel needs a head or a classifier")
        if static is not None and (head is None or head.static is None):
            raise ChurnError(
                "the sentiment head has no static head for the cascade: retrain it with `churn sentiment-train`, "
                "or set CHURN_TEXT_ENCODER=transformer"
            )
        self.encoder = encoder
        self.head = head
        self.classifier = classifier
        self.static = static
        self.route_below = route_below  # 0: the static head alone
        self._clf: tuple[Any, Any, dict[int, int]] | None = None  # (tokenizer, model, label map), loaded on first use

    @property
    def embedder(self) -> TextEncoder | StaticEncoder:
        """Whose embeddings `predict` returns (the rephrasing thresholds belong to its space)."""
        return self.static or self.encoder

    @property
    def key(self) -> str:
        """Names what scores a text (the cache is keyed on it). Scores from a bfloat16 encoder are kept
        apart from float32 ones: nearly the same (labels agree), but a run never mixes the two."""
        key = self.head.key if self.head is not None else f"hf:{self.classifier}|{self.encoder.key}"
        if self.static is not None:
            key = f"{key}|{self._cascade_heads()[1].key}|{self.static.key}@{self.route_below:g}"
        # the transformer's precision only where it scores (asking for it loads the transformer)
        if not self.uses_transformer or self.encoder.precision == "fp32":
            return key
        return f"{key}|{self.encoder.precision}"

    @property
    def uses_transformer(self) -> bool:
        """Whether any sentence can reach the transformer: not with the static head alone (`static`
        mode, route_below 0), whose model then never loads the transformer, only its tokenizer."""
        return self.static is None or self.route_below > 0

    def load(self) -> None:
        """Load (and make, the first time) what scoring needs, now rather than on the first text."""
        if self.uses_transformer:
            self.encoder.dimension  # noqa: B018
        if self.static is not None:
            self.static.load()

    def predict(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities [n, 3] in LABELS order, embeddings [n, d] of `embedder`)."""
        if self.static is not None:
            head, static_head = self._cascade_heads()
            embeddings = self.static.embed(texts)
            p = static_head.predict_proba(embeddings, texts)
            unsure = np.flatnonzero(p.max(axis=1) < self.route_below)
            if len(unsure):
                subset = [texts[i] for i in unsure]
                p[unsure] = head.predict_proba(self.encoder.embed(subset), subset)
            return p, embeddings
        embeddings = self.encoder.embed(texts)
        if self.head is not None:
            return self.head.predict_proba(embeddings, texts), embeddings
        return self._classify(texts), embeddings

    def _cascade_heads(self) -> tuple[SentimentHead, SentimentHead]:
        """(head, its static head) of a cascade: the constructor refuses a cascade without them."""
        assert self.head is not None and self.head.static is not None
        return self.head, self.head.static

    def _classify(self, texts: list[str]) -> np.ndarray:
        import torch

        if self._clf is None:
            assert self.classifier is not None  # the constructor refuses a model with neither head nor classifier
            tok, model = load_pretrained(self.classifier, "AutoModelForSequenceClassification")
            names = {i: str(n).lower() for i, n in model.config.id2label.items()}
            mapping = {}
            for i, name in names.items():
                for label in LABELS:
                    if name.startswith(label[:3]):
                        mapping[i] = LABELS.index(label)
            if len(names) == 3 and not mapping:  # LABEL_0/1/2: the usual negative/neutral/positive order
                mapping = {0: 0, 1: 1, 2: 2}
            if not {0, 2} <= set(mapping.values()):
                raise ChurnError(
                    f"sentiment model {self.classifier!r}: labels {sorted(names.values())} do not name negative and positive"
                )
            self._clf = (tok, model, mapping)
        tok, model, mapping = self._clf
        out = np.zeros((len(texts), 3))
        with torch.inference_mode():
            for start in range(0, len(texts), self.encoder.batch_size):
                batch = tok(
                    texts[start : start + self.encoder.batch_size],
                    padding=True,
                    truncation=True,
                    max_length=self.encoder.max_length,
                    return_tensors="pt",
                )
                probs = torch.softmax(model(**batch).logits, dim=-1).numpy()
                for i, j in mapping.items():
                    out[start : start + len(probs), j] += probs[:, i]
        return out


def labels_of(probabilities: np.ndarray) -> np.ndarray:
    """The label (LABELS) of each row of probabilities, as an object array."""
    return np.asarray(LABELS, dtype=object)[probabilities.argmax(axis=1)]
