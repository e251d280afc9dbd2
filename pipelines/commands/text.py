"""`churn sentiment-train|sentiment-score`: the sentiment head retrained on a customer's labels, and
messages scored with it."""

from __future__ import annotations

from pathlib import Path

import click

from pipelines.console import emit, json_option, path_option


@click.command("sentiment-train")
@path_option("--labels", required=True, help="CSV or Parquet of labelled messages.")
@click.option("--text-column", default="text", show_default=True, help="Column holding the message text.")
@click.option(
    "--label-column",
    default="label",
    show_default=True,
    help="Column holding negative/neutral/positive (or neg/neu/pos, -1/0/1).",
)
@path_option(
    "--out",
    default=None,
    help="Where to write the head [default: CHURN_SENTIMENT_HEAD or DATA_DIR/models/sentiment_head.json].",
)
@json_option
def sentiment_train(labels: Path, text_column: str, label_column: str, out: Path | None, as_json: bool) -> None:
    """Retrain the sentiment head on your own labelled messages (5-fold CV metrics reported)."""
    from core.settings import load_settings
    from pipelines.text import train_sentiment
    from text.loading import head_path

    settings = load_settings()
    target = out or head_path(settings)
    result = train_sentiment(labels, target, text_column=text_column, label_column=label_column, settings=settings)
    emit(
        result,
        as_json,
        f"trained on {result['messages']:,} messages: 5-fold accuracy {result['cv_accuracy']:.3f}, "
        f"macro-F1 {result['cv_macro_f1']:.3f}; head written to {target}",
    )


@click.command("sentiment-score")
@path_option("--input", "source", required=True, help="CSV or Parquet file with messages.")
@click.option("--text-column", required=True, help="Column holding the message text.")
@path_option(
    "--out",
    required=True,
    help="Output file (.csv or .parquet): the input plus label and score.",
)
@json_option
def sentiment_score(source: Path, text_column: str, out: Path, as_json: bool) -> None:
    """Score messages: label (negative/neutral/positive) and score in [-1, 1]; known texts come from the cache."""
    from core.settings import load_settings
    from pipelines.text import score_file
    from text.loading import load_sentiment_model, open_cache

    settings = load_settings()
    cache = open_cache(settings)
    try:
        result = score_file(source, out, text_column=text_column, model=load_sentiment_model(settings), cache=cache)
    finally:
        cache.close()
    emit(
        result,
        as_json,
        f"scored {result['rows']:,} rows ({result['newly_scored']:,} distinct texts through the model, the rest known from the cache) "
        f"in {result['seconds']:.1f}s -> {out}: {result['labels']}",
    )


COMMANDS = (sentiment_train, sentiment_score)
