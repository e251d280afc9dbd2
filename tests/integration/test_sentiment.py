"""Transformer sentiment: loads offline, scores well on held-out messages, never rescores a known text."""

from __future__ import annotations

import json
import socket

import numpy as np
import pandas as pd
import pytest

from features.text.sentiment import score_texts
from pipelines.cli import main
from text.cache import TextCache
from text.encoder import TextEncoder
from text.sentiment import (
    CORPUS,
    SHIPPED_HEAD,
    SentimentHead,
    SentimentModel,
    cross_validate_head,
    fit_head,
    normalise_labels,
)

#: the hidden size of the shipped all-MiniLM-L6-v2: what the transformer path embeds into
MINILM_DIMENSION = 384


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder()


@pytest.fixture(scope="module")
def corpus(encoder):
    frame = pd.read_csv(CORPUS)
    return frame, encoder.embed(frame["text"].tolist())


def test_default_model_loads_with_the_network_disabled(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    fresh = TextEncoder()  # a new instance: nothing loaded yet
    emb = fresh.embed(["Our exports are broken", "Thanks, all good now"])
    assert emb.shape == (2, MINILM_DIMENSION)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    assert float(emb[0] @ emb[1]) < 0.9  # different texts, different vectors


def test_corpus_is_large_varied_and_labelled():
    frame = pd.read_csv(CORPUS)
    assert len(frame) >= 600 and frame["text"].is_unique
    assert set(normalise_labels(frame["label"])) == {"negative", "neutral", "positive"}
    text = frame["text"].str.lower()
    for phrase in ("not happy", "no complaints", "cancel", "manager", "lawyers", "chargeback"):
        assert text.str.contains(phrase).any(), phrase


def test_head_generalises_to_held_out_messages(corpus, encoder):
    frame, emb = corpus
    metrics = cross_validate_head(emb, frame["text"], normalise_labels(frame["label"]), encoder.key, folds=5)
    print(f"5-fold held-out accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}")
    assert metrics["macro_f1"] > 0.75


def test_shipped_head_matches_the_encoder_and_reads_negation(encoder):
    head = SentimentHead.load(SHIPPED_HEAD)
    assert head.encoder == encoder.key
    model = SentimentModel(encoder, head)
    scores, _ = score_texts(
        [
            "No complaints at all, everything works.",
            "Not happy at all with the response time.",
            "We are seriously considering cancelling our subscription.",
        ],
        model,
    )
    assert scores["label"].tolist()[1:] == ["negative", "negative"]
    assert scores["score"].iloc[0] > scores["score"].iloc[1]
    assert scores["score"].between(-1, 1).all()


class CountingEncoder(TextEncoder):
    def __init__(self):
        super().__init__()
        self.seen: list[str] = []

    def embed(self, texts):
        self.seen.extend(texts)
        return super().embed(texts)


def test_cache_never_rescores_a_known_text(tmp_path, corpus):
    frame, emb = corpus
    counting = CountingEncoder()
    model = SentimentModel(counting, fit_head(emb, frame["text"], normalise_labels(frame["label"]), counting.key))
    cache = TextCache(tmp_path / "cache.sqlite")
    first, first_emb = score_texts(["it is broken", "thanks!", "it is broken"], model, cache)
    assert sorted(counting.seen) == ["it is broken", "thanks!"]  # duplicates scored once
    counting.seen.clear()
    again, again_emb = score_texts(["thanks!", "a new message", "it is broken"], model, cache)
    assert counting.seen == ["a new message"]
    assert again["score"].iloc[0] == first["score"].iloc[1]
    np.testing.assert_allclose(again_emb[2], first_emb[0])
    counting.seen.clear()
    reopened = TextCache(tmp_path / "cache.sqlite")  # a rerun in a new process reads the same file
    score_texts(["it is broken", "thanks!", "a new message"], model, reopened)
    assert counting.seen == [] and reopened.count(model.key) == 3


def test_sentiment_cli_train_and_score(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CHURN_DATA_DIR", str(tmp_path / "data"))
    labels = pd.read_csv(CORPUS).sample(200, random_state=0)
    labels.rename(columns={"text": "message", "label": "tone"}).assign(tone=lambda d: d["tone"].str[:3]).to_csv(
        tmp_path / "l.csv", index=False
    )
    assert (
        main(
            [
                "sentiment-train",
                "--labels",
                str(tmp_path / "l.csv"),
                "--text-column",
                "message",
                "--label-column",
                "tone",
                "--json",
            ]
        )
        == 0
    )
    trained = json.loads(capsys.readouterr().out)
    # the cascade's own cross-validation
    assert trained["messages"] == 200 and 0 < trained["cv_macro_f1"] <= 1 and 0 < trained["cv_routed"] < 1
    assert (tmp_path / "data" / "models" / "sentiment_head.json").is_file()  # used by default from now on
    # both heads: the setting can change later
    assert SentimentHead.load(tmp_path / "data" / "models" / "sentiment_head.json").static is not None
    pd.DataFrame(
        {"id": [1, 2], "msg": ["Fantastic support, thank you!", "This is unacceptable, nothing works"]}
    ).to_csv(tmp_path / "in.csv", index=False)
    assert (
        main(
            [
                "sentiment-score",
                "--input",
                str(tmp_path / "in.csv"),
                "--text-column",
                "msg",
                "--out",
                str(tmp_path / "out.csv"),
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    scored = pd.read_csv(tmp_path / "out.csv")
    assert scored["label"].tolist() == ["positive", "negative"] and scored["score"].between(-1, 1).all()
    assert result["newly_scored"] == 2 and (tmp_path / "data" / "text_cache.sqlite").is_file()


def test_sentiment_cli_bad_input_names_the_column(tmp_path, capsys):
    pd.DataFrame({"text": ["a", "b"], "label": ["happy", "sad"]}).to_csv(tmp_path / "l.csv", index=False)
    assert main(["sentiment-train", "--labels", str(tmp_path / "l.csv"), "--out", str(tmp_path / "h.json")]) == 2
    assert "column 'label'" in capsys.readouterr().err
    assert (
        main(
            [
                "sentiment-score",
                "--input",
                str(tmp_path / "l.csv"),
                "--text-column",
                "body",
                "--out",
                str(tmp_path / "o.csv"),
            ]
        )
        == 2
    )
    assert "--text-column 'body'" in capsys.readouterr().err
    assert not (tmp_path / "o.csv").exists() and not (tmp_path / "h.json").exists()


def test_a_hugging_face_classifier_given_by_path_replaces_the_default(tmp_path, monkeypatch):
    """A sequence-classification model in a local folder (a tiny one built here) is used instead of the head."""
    import shutil

    from transformers import BertConfig, BertForSequenceClassification

    from core.settings import load_settings
    from text.encoder import default_model_dir
    from text.loading import load_sentiment_model

    folder = tmp_path / "my-sentiment-model"
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        id2label={0: "NEGATIVE", 1: "NEUTRAL", 2: "POSITIVE"},
        label2id={"NEGATIVE": 0, "NEUTRAL": 1, "POSITIVE": 2},
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(default_model_dir() / name, folder / name)
    monkeypatch.setenv("CHURN_SENTIMENT_MODEL", str(folder))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = load_sentiment_model(load_settings())
    assert model.head is None and model.key.startswith("hf:")
    scores, emb = score_texts(["Great, thanks!", "This is broken again."], model)
    probs = scores[["p_negative", "p_neutral", "p_positive"]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert set(scores["label"]) <= {"negative", "neutral", "positive"} and emb.shape == (2, MINILM_DIMENSION)


def test_onnx_runtime_computes_the_same_embeddings_as_pytorch(tmp_path, corpus):
    frame, embedded = corpus
    texts = frame["text"].tolist()[:120]
    onnx = TextEncoder(runtime="onnx", export_dir=tmp_path)
    torch = TextEncoder(runtime="torch")
    assert (onnx.backend, torch.backend) == ("onnxruntime", "torch")
    batched = onnx.embed(texts)
    one_by_one = np.vstack([onnx.embed([t]) for t in texts[:20]])
    reference = torch.embed(texts)
    assert np.abs(batched - reference).max() < 1e-5
    assert np.abs(one_by_one - reference[:20]).max() < 1e-5
    # the module's default encoder (batch work: ONNX Runtime) too
    assert np.abs(embedded[:120] - reference).max() < 1e-5

    # the export is kept and reused: a second encoder opens the same file without exporting again
    [exported] = list(tmp_path.glob("*.onnx"))
    stamp = exported.stat().st_mtime_ns
    again = TextEncoder(runtime="onnx", export_dir=tmp_path)
    assert again.backend == "onnxruntime" and np.abs(again.embed(texts[:3]) - reference[:3]).max() < 1e-5
    assert list(tmp_path.glob("*.onnx")) == [exported] and exported.stat().st_mtime_ns == stamp
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_an_exported_encoder_embeds_without_importing_pytorch(encoder):
    """Once the export exists, a process that embeds (an API worker, a feature block) imports
    neither PyTorch nor transformers' model configuration: seconds and about 190 MB per worker."""
    import subprocess
    import sys

    assert encoder.embed(["made before the child starts"]).shape == (1, MINILM_DIMENSION)  # the export exists
    script = (
        "import sys; from text.encoder import TextEncoder; "
        "e = TextEncoder(); v = e.embed(['Exports fail again.']); "
        "print(e.backend, v.shape[1], 'torch' in sys.modules)"
    )
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.split() == ["onnxruntime", str(MINILM_DIMENSION), "False"], child.stdout


def test_an_export_that_disagrees_with_pytorch_is_not_used(tmp_path, monkeypatch, caplog):
    import text.encoder as encoder_module
    from core.errors import ChurnError

    # no export can pass: as if it computed something else
    monkeypatch.setattr(encoder_module, "EXPORT_TOLERANCE", -1.0)
    fallback = TextEncoder(export_dir=tmp_path)
    with caplog.at_level("WARNING", logger="churn.text"):
        assert fallback.backend == "torch"
    assert "ONNX export not used" in caplog.text and "differs from PyTorch" in caplog.text
    assert fallback.embed(["still works"]).shape == (1, MINILM_DIMENSION)
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".*"))  # nothing half-written kept
    with pytest.raises(ChurnError, match="differs from PyTorch"):
        TextEncoder(runtime="onnx", export_dir=tmp_path).embed(["x"])
    with pytest.raises(ChurnError, match="text runtime 'tensorrt': expected one of auto, openvino, onnx, torch"):
        TextEncoder(runtime="tensorrt")
    from core.errors import InputError
    from core.settings import load_settings

    monkeypatch.setenv("CHURN_TEXT_RUNTIME", "tensorrt")
    with pytest.raises(
        InputError, match=r"text_runtime' \(env CHURN_TEXT_RUNTIME\).*'auto', 'openvino', 'onnx' or 'torch'"
    ):
        load_settings()


def test_sentences_of_a_few_messages_split_as_in_a_column():
    from features.text.sentiment import SMALL, _sentences

    texts = [
        "How do I export? It fails.  Again!",
        "",
        "   ",
        None,
        "No punctuation at all",
        "Same. Same.",
        "Wait...what? ok",
        "How do I export?",
        "Line one.\nLine two",
        float("nan"),
    ]
    few = _sentences(texts)
    many = _sentences(texts * (SMALL // len(texts) + 1))  # the pandas path
    n = len(texts)
    owners, codes, units = many
    cut = owners < n
    assert few[0].tolist() == owners[cut].tolist()
    assert [few[2][c] for c in few[1]] == [units[c] for c in codes[cut]]
    assert few[2] == units[: len(few[2])]


def test_threads_loading_the_encoder_at_once_share_one_export(tmp_path):
    from tests.conftest import run_in_threads

    encoders = [TextEncoder(export_dir=tmp_path) for _ in range(3)]
    results = {}

    def load(i: int) -> None:
        results[i] = (encoders[i].backend, encoders[i].embed(["the export still fails"]))

    assert run_in_threads(load, 3) == []
    assert len({backend for backend, _ in results.values()}) == 1 and results[0][0] != "torch"
    assert np.abs(results[0][1] - results[2][1]).max() == 0
    assert len(list(tmp_path.glob("*.onnx"))) == 1


def _has_bf16() -> bool:
    import openvino

    return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def test_openvino_gives_the_same_sentiment_as_float32(corpus):
    """OpenVINO runs the matrix products in bfloat16 where the CPU has the instructions: nearly the
    same embeddings, the same labels, and scores cached apart from float32 ones."""
    frame, _ = corpus
    texts = frame["text"].tolist()
    fast = TextEncoder(runtime="openvino")
    exact = TextEncoder(runtime="onnx")
    assert fast.backend == "openvino" and fast.precision == ("bf16" if _has_bf16() else "fp32")
    # auto: float32 everywhere (the API and batch work agree however a text is batched)
    assert (TextEncoder().backend, TextEncoder().precision) == ("onnxruntime", "fp32")
    a, b = fast.embed(texts), exact.embed(texts)
    head = SentimentHead.load(SHIPPED_HEAD)
    pa, pb = head.predict_proba(a, texts), head.predict_proba(b, texts)
    cosine = (a * b).sum(axis=1)
    assert cosine.min() > 0.999, cosine.min()
    assert np.mean(pa.argmax(axis=1) == pb.argmax(axis=1)) >= 0.99  # 615 of 615 on the reference machine
    assert np.abs((pa[:, 2] - pa[:, 0]) - (pb[:, 2] - pb[:, 0])).max() < 0.05  # 0.006 there
    one_by_one = np.vstack([fast.embed([t]) for t in texts[:10]])
    assert (one_by_one * b[:10]).sum(axis=1).min() > 0.999
    fast_key, exact_key = SentimentModel(fast, head).key, SentimentModel(exact, head).key
    assert exact_key == head.key and fast_key == (f"{head.key}|bf16" if fast.precision == "bf16" else head.key)


@pytest.mark.skipif(
    not _has_bf16(),
    reason="this CPU has no bfloat16 instructions: OpenVINO runs float32 and there is no bfloat16 check",
)
def test_bfloat16_that_drifts_from_float32_is_not_used(monkeypatch):
    import text.encoder as encoder_module
    from core.errors import ChurnError

    monkeypatch.setattr(encoder_module, "BF16_MIN_COSINE", 1.5)  # no cosine can pass: as if bfloat16 broke the model
    with pytest.raises(ChurnError, match="bfloat16 embeddings have cosine .* to float32"):
        TextEncoder(runtime="openvino").embed(["x"])


def test_the_head_scores_a_few_texts_as_the_vectoriser_does(corpus):
    """A live ticket's few messages skip scikit-learn's vectoriser (its per-call checks cost 0.4 ms): the same logits."""
    from text.sentiment import SMALL

    frame, embedded = corpus
    head = SentimentHead.load(SHIPPED_HEAD)
    texts = [
        *frame["text"].tolist()[:200],
        "",
        "   ",
        "Don't DON'T don't stop!",
        "Café déjà-vu: ünïcode wörds",
        "ok ok ok ok",
    ]
    emb = np.vstack([embedded[:200], np.repeat(embedded[:1], 5, axis=0)])
    assert len(texts) >= SMALL  # all at once: the vectoriser's path
    together = head.predict_proba(emb, texts)
    few = np.vstack([head.predict_proba(emb[i : i + 3], texts[i : i + 3]) for i in range(0, len(texts), 3)])
    np.testing.assert_allclose(few, together, rtol=0, atol=1e-12)
