"""The text cascade: static embeddings distilled from the shipped MiniLM score most sentences, the
transformer only those the static head is unsure of; live and batch paths agree."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.errors import ChurnError
from features.text.sentiment import score_texts, sentiment_arrays
from features.text.signals import SignalParams
from tests.integration.test_sentiment import CountingEncoder
from text.encoder import TextEncoder
from text.sentiment import (
    CORPUS,
    ROUTE_BELOW,
    SHIPPED_HEAD,
    SentimentHead,
    SentimentModel,
    cross_validate_head,
    normalise_labels,
)
from text.static import DIMENSION, StaticEncoder


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder()


@pytest.fixture(scope="module")
def static(encoder) -> StaticEncoder:
    return StaticEncoder(encoder)


@pytest.fixture(scope="module")
def corpus():
    frame = pd.read_csv(CORPUS)
    return frame["text"].tolist(), normalise_labels(frame["label"])


def test_static_embeddings_are_unit_length_and_do_not_depend_on_the_batch(static):
    texts = ["The export fails again.", "ok", "", "Thanks, that fixed it!", "Café déjà-vu", "The export fails again."]
    together = static.embed(texts)
    assert together.shape == (len(texts), DIMENSION) and together.dtype == np.float32
    norms = np.linalg.norm(together, axis=1)
    assert np.allclose(norms[[0, 1, 3, 4, 5]], 1.0, atol=1e-5) and norms[2] == 0  # a blank text has no tokens: zeros
    alone = np.vstack([static.embed([t]) for t in texts])
    np.testing.assert_array_equal(alone, together)  # a token's row is the same in any batch: exactly
    np.testing.assert_array_equal(together[0], together[5])
    # meaning survives the distillation: a rewording is closer than an unrelated sentence
    a, b, c = static.embed(
        [
            "The monthly export keeps failing.",
            "Our monthly export is failing again.",
            "Thanks for the great onboarding call!",
        ]
    )
    assert a @ b > a @ c + 0.1


def test_the_table_is_made_once_and_kept(static, encoder, monkeypatch):
    import text.static as module

    static.table()
    monkeypatch.setattr(module, "distil", lambda teacher: pytest.fail("the kept table should be read, not made again"))
    fresh = StaticEncoder(encoder)
    np.testing.assert_array_equal(fresh.table(), static.table())
    kept = list(encoder.export_folder().glob(f"*static{DIMENSION}*.npy"))
    assert len(kept) == 1 and not list(encoder.export_folder().glob(".*"))  # no temporary file left behind


def test_the_shipped_static_head_fits_this_machines_table(static, corpus):
    """The head was fitted on a table distilled elsewhere: a table distilled here must be the same
    space (a flipped or reordered component would show as a collapse in accuracy)."""
    texts, y = corpus
    head = SentimentHead.load(SHIPPED_HEAD)
    assert head.static is not None and head.static.encoder == static.key
    p = head.static.predict_proba(static.embed(texts), texts)
    # its own training texts
    assert np.mean(np.asarray(["negative", "neutral", "positive"])[p.argmax(axis=1)] == y.to_numpy()) > 0.9


def test_the_cascade_keeps_the_transformers_quality_on_held_out_messages(encoder, static, corpus):
    texts, y = corpus
    emb, fixed = encoder.embed(texts), static.embed(texts)
    transformer = cross_validate_head(emb, texts, y, encoder.key)
    cascade = cross_validate_head(emb, texts, y, encoder.key, static=fixed)
    alone = cross_validate_head(emb, texts, y, encoder.key, static=fixed, route_below=0.0)
    print(
        f"5-fold macro-F1: transformer {transformer['macro_f1']:.3f}, cascade {cascade['macro_f1']:.3f} "
        f"(transformer on {cascade['routed']:.0%}), static alone {alone['macro_f1']:.3f}"
    )
    assert cascade["macro_f1"] >= transformer["macro_f1"] - 0.02
    assert cascade["routed"] < 0.4  # most sentences never reach the transformer
    assert alone["macro_f1"] < cascade["macro_f1"]  # the reason for the cascade


def test_only_unsure_sentences_reach_the_transformer(static):
    counting = CountingEncoder()
    head = SentimentHead.load(SHIPPED_HEAD)
    model = SentimentModel(counting, head, static=StaticEncoder(counting))
    texts = [
        "Thank you so much, everything works perfectly now!",
        "This is completely unacceptable, we will cancel.",
        "We moved the meeting to Thursday.",
        "hmm",
        "The report is ok I guess but the numbers look a bit off?",
    ]
    p, emb = model.predict(texts)
    first = head.static.predict_proba(static.embed(texts), texts)
    unsure = [t for t, q in zip(texts, first, strict=True) if q.max() < ROUTE_BELOW]
    assert counting.seen == unsure and len(unsure) < len(texts)
    sure = first.max(axis=1) >= ROUTE_BELOW
    np.testing.assert_allclose(p[sure], first[sure])
    # the static space, for every sentence (rephrasings compare in one space)
    assert emb.shape == (len(texts), DIMENSION)
    never = SentimentModel(counting, head, static=StaticEncoder(counting), route_below=0.0)
    counting.seen.clear()
    never.predict(texts)
    assert counting.seen == []


def test_live_and_batch_sentiment_agree(encoder, static, corpus):
    """The API scores a ticket's few messages (plain Python); batch work scores columns (pandas):
    the same message gets the same sentiment either way."""
    texts, _ = corpus
    model = SentimentModel(encoder, SentimentHead.load(SHIPPED_HEAD), static=static)
    batch, batch_emb = score_texts(texts, model)
    probabilities = np.vstack([sentiment_arrays(texts[i : i + 3], model)[0] for i in range(0, len(texts), 3)])
    live_emb = np.vstack([sentiment_arrays(texts[i : i + 3], model)[1] for i in range(0, len(texts), 3)])
    assert np.abs(probabilities - batch[["p_negative", "p_neutral", "p_positive"]].to_numpy()).max() <= 1e-6
    assert np.abs(live_emb - batch_emb).max() <= 1e-6


def test_each_mode_scores_under_its_own_cache_key(encoder, static):
    head = SentimentHead.load(SHIPPED_HEAD)
    keys = {
        SentimentModel(encoder, head).key,
        SentimentModel(encoder, head, static=static).key,
        SentimentModel(encoder, head, static=static, route_below=0.0).key,
    }
    # the transformer's scores cached before stay valid
    assert len(keys) == 3 and SentimentModel(encoder, head).key == head.key


def test_a_head_without_a_static_partner_names_the_fix(encoder, static):
    head = SentimentHead.load(SHIPPED_HEAD)
    head.static = None  # as a head trained before the cascade
    with pytest.raises(ChurnError, match="sentiment-train.*CHURN_TEXT_ENCODER=transformer"):
        SentimentModel(encoder, head, static=static)


def test_a_head_trained_before_the_cascade_still_scores(tmp_path, monkeypatch, caplog):
    """A user's own head from before the cascade keeps working (every sentence through the
    transformer), with a warning that says how to get the cascade's speed."""
    from core.settings import load_settings
    from text.loading import load_sentiment_model

    head = SentimentHead.load(SHIPPED_HEAD)
    head.static = None
    head.save(tmp_path / "old_head.json")
    monkeypatch.setenv("CHURN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CHURN_SENTIMENT_HEAD", str(tmp_path / "old_head.json"))
    with caplog.at_level("WARNING", logger="churn.text"):
        model = load_sentiment_model(load_settings())
    assert model.static is None and "churn sentiment-train" in caplog.text
    assert score_texts(["This is unacceptable, we will cancel."], model)[0]["label"].iloc[0] == "negative"


def test_the_setting_picks_the_encoder(tmp_path, monkeypatch):
    from core.settings import load_settings
    from text.loading import load_sentiment_model

    monkeypatch.setenv("CHURN_DATA_DIR", str(tmp_path))
    assert load_sentiment_model(load_settings()).static is not None  # the default: the cascade
    monkeypatch.setenv("CHURN_TEXT_ENCODER", "transformer")
    assert load_sentiment_model(load_settings()).static is None
    monkeypatch.setenv("CHURN_TEXT_ENCODER", "static")
    assert load_sentiment_model(load_settings()).route_below == 0
    monkeypatch.setenv("CHURN_TEXT_ENCODER", "fast")
    with pytest.raises(Exception, match="text_encoder"):
        load_settings()


def test_rephrasing_thresholds_belong_to_the_embedding_space(encoder, static):
    assert SignalParams().within(encoder).rephrase_similarity == TextEncoder.rephrase_similarity
    assert SignalParams().within(static).rephrase_similarity == StaticEncoder.rephrase_similarity
    assert SignalParams(rephrase_similarity=0.5).within(static).rephrase_similarity == 0.5  # a user's own value wins


def test_static_mode_loads_the_tokenizer_alone_and_scores_as_before(encoder, static, corpus):
    """CHURN_TEXT_ENCODER=static sends no sentence to the transformer, so it loads only its
    tokenizer (issue 17): no ONNX, OpenVINO or PyTorch session is made, and the token ids, the
    embeddings and the scores are those of the transformer's own tokenizer, as before."""
    texts = [*corpus[0], "", "   ", "x " * 400, "Ünïcödé café naïve 東京 😀", "don't   STOP\tthe\nexport"]
    static.table()  # made (or read) with the full teacher: what static mode needs to be kept already
    fresh = TextEncoder()
    head = SentimentHead.load(SHIPPED_HEAD)
    model = SentimentModel(fresh, head, static=StaticEncoder(fresh), route_below=0.0)
    model.load()
    p, emb = model.predict(texts)
    key = model.key
    assert not fresh._loaded and (fresh._session, fresh._compiled, fresh._model, fresh._tokenizer) == (None,) * 4

    # before: the ids of the transformer's tokenizer (which loads the model), averaged over the table
    before = encoder.tokenizer()(texts, add_special_tokens=False, truncation=True, max_length=encoder.max_length)
    ids = before["input_ids"]
    assert fresh.token_ids(texts) == ids
    table = static.table()
    rows = np.vstack([table[row].mean(axis=0) if row else np.zeros(DIMENSION, np.float32) for row in ids])
    rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    np.testing.assert_allclose(emb, rows, rtol=0, atol=1e-6)
    loaded = SentimentModel(encoder, head, static=static, route_below=0.0)
    np.testing.assert_array_equal(p, loaded.predict(texts)[0])
    assert key == loaded.key  # the text cache's scores stay valid


def test_static_mode_imports_no_inference_runtime(static):
    """In a fresh process, a static-mode sentiment model is loaded and scores without importing
    PyTorch, ONNX Runtime, OpenVINO or transformers (the measure of what it no longer loads)."""
    import json
    import os
    import subprocess
    import sys

    static.table()  # kept in the session's export folder (CHURN_ENCODER_CACHE), which the child reads
    script = (
        "import json, sys\n"
        "from core.settings import load_settings\n"
        "from text.loading import load_sentiment_model\n"
        "model = load_sentiment_model(load_settings())\n"
        "model.load()\n"
        "p, _ = model.predict(['The export still fails, we will cancel.', 'Thanks, that fixed it!'])\n"
        "print(json.dumps({'labels': p.argmax(axis=1).tolist(), 'modules': sorted(m for m in "
        "('torch', 'onnxruntime', 'openvino', 'transformers') if m in sys.modules)}))\n"
    )
    env = {**os.environ, "CHURN_TEXT_ENCODER": "static"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"labels": [0, 2], "modules": []}
