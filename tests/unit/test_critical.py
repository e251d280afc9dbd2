"""Critical moments: the categories of docs/escalation-practice.md, negation-aware, with the matched words."""

from __future__ import annotations

import pandas as pd
import pytest

from features.text.critical import detect_critical


@pytest.mark.parametrize(
    ("text", "category", "matched"),
    [
        ("We want to cancel our subscription.", "cancel", "want to cancel"),
        ("Please close our account at the end of the term", "cancel", "close our account"),
        ("We are not renewing. Please confirm the end date.", "cancel", "not renewing"),
        ("We're evaluating other vendors", "cancel", "evaluating other vendors"),
        ("I want to speak to a manager", "supervisor", "speak to a manager"),
        ("Get me someone senior on this", "supervisor", "someone senior"),
        ("Very disappointed with the service", "disappointed", "Very disappointed"),
        ("Our legal team will be in touch", "legal", "legal team"),
        ("This is a breach of contract", "legal", "breach of contract"),
        ("We'll file a chargeback", "chargeback", "chargeback"),
        ("We will dispute the charge with our bank", "chargeback", "dispute the charge with our bank"),
        # the most severe category names a message with several
        ("Very disappointed. Our lawyers are reviewing the contract and we want to cancel.", "legal", "lawyers"),
    ],
)
def test_categories_and_matched_words(text, category, matched):
    row = detect_critical(pd.Series([text])).iloc[0]
    assert row["critical"] and row["category"] == category and row["matched"] == matched


@pytest.mark.parametrize(
    "text",
    [
        "I don't want to cancel, just fix it",
        "Don't worry, we're not planning to cancel anything",
        "No need to escalate this to a manager, just flagging",
        "Not disappointed at all, just curious",
        "We have no intention of cancelling our subscription",
        "We're not evaluating other vendors",
        "Can we cancel the extra seats we added by mistake?",  # cancelling seats is not leaving
        "How do I cancel a scheduled export?",
        "I never said we would switch to a competitor",
    ],
)
def test_negated_or_harmless_phrases_do_not_count(text):
    assert not detect_critical(pd.Series([text])).iloc[0]["critical"]


def test_negation_is_scoped_to_its_clause():
    row = detect_critical(pd.Series(["We don't want drama, but I want to speak to a manager"])).iloc[0]
    assert row["category"] == "supervisor"


def test_missing_text_and_alignment():
    out = detect_critical(pd.Series([None, "want to cancel", ""], index=[7, 8, 9]))
    assert out.index.tolist() == [7, 8, 9]
    assert out["critical"].tolist() == [False, True, False]


def test_live_path_and_batch_path_agree():
    """One ticket (a few messages) goes through plain `re`, a batch through pandas: same answers."""
    from features.text.critical import SMALL
    from text.sentiment import CORPUS

    corpus = pd.read_csv(CORPUS)["text"].tolist()  # 615 hand-written support messages
    texts = pd.Series(
        corpus
        + [
            "We don't want to cancel",
            "not disappointed at all",
            None,
            "",
            "I want to speak to a manager. Very disappointed.",
            "Our legal team will be in touch; we'll file a chargeback",
            "We are not renewing.",
        ]
    )
    assert len(texts) > SMALL
    batch = detect_critical(texts)
    single = pd.concat([detect_critical(texts.iloc[i : i + 1]) for i in range(len(texts))])
    pd.testing.assert_frame_equal(batch.reset_index(drop=True), single.reset_index(drop=True), check_dtype=False)


def test_the_batch_path_keeps_any_index_and_finds_what_each_message_holds():
    """Only messages with some phrase are searched further; the answers land on their own rows
    whatever the index (here repeated and out of order)."""
    from features.text.critical import SMALL

    texts = ["thanks, all good", "we want to cancel our subscription", "no need to escalate to a manager"] * SMALL
    batch = detect_critical(pd.Series(texts, index=[5, 5, 3] * SMALL))
    assert list(batch.index) == [5, 5, 3] * SMALL
    assert batch["category"].iloc[1] == "cancel" and batch["category"].iloc[[0, 2]].isna().all()
    assert batch["critical"].tolist() == [False, True, False] * SMALL
    assert batch["matched"].iloc[1] == "want to cancel"
