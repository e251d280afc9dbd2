"""Sentiment quality and speed, against the VADER lexicon baseline.

Quality: accuracy and macro-F1 (negative / neutral / positive)
  - on the shipped corpus: our head by 5-fold cross-validation (held-out folds), VADER as is;
  - on simulated customer messages (labels: the tone the simulator wrote them in; angry counts as
    negative): the shipped head (never trained on simulator text) and VADER.
Speed on this machine (2 cores): messages per second by message length with the cache off (the
simulated messages share sentences, which are scored once each; the hand-written corpus has no
repeats and shows the cold path), and the cache-hit path. Goal: >= 250 messages/s for typical
messages.

    python benchmarks/sentiment.py
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder comes first on sys.path and its files would shadow the project's
# packages of the same name (features, models, serving): import the project instead.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from benchmarks._record import save  # noqa: E402
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def vader_labels(texts: list[str]) -> list[str]:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    out = []
    for text in texts:  # the baseline's own per-text API
        c = analyzer.polarity_scores(text)["compound"]
        out.append("positive" if c >= 0.05 else "negative" if c <= -0.05 else "neutral")
    return out


def quality(y: list[str], pred: list[str]) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    return {"accuracy": round(float(accuracy_score(y, pred)), 3), "macro_f1": round(float(f1_score(y, pred, average="macro")), 3)}


def main() -> None:
    from features.text.cache import TextCache
    from features.text.encoder import TextEncoder
    from features.text.sentiment import CORPUS, SHIPPED_HEAD, SentimentHead, SentimentModel, cross_validate_head, normalise_labels, score_texts
    from simulation.config import SimulationConfig
    from simulation.simulate import simulate

    print(f"sentiment benchmark on {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    results: dict = {}
    encoder = TextEncoder()
    corpus = pd.read_csv(CORPUS)
    y = normalise_labels(corpus["label"])
    emb = encoder.embed(corpus["text"].tolist())
    results["corpus"] = {"messages": len(corpus), "ours_5fold": cross_validate_head(emb, corpus["text"], y, encoder.key),
                         "vader": quality(y.tolist(), vader_labels(corpus["text"].tolist()))}
    r = results["corpus"]
    print(f"corpus ({len(corpus)} messages): ours (5-fold held out) accuracy {r['ours_5fold']['accuracy']:.3f} macro-F1 {r['ours_5fold']['macro_f1']:.3f}; "
          f"VADER accuracy {r['vader']['accuracy']:.3f} macro-F1 {r['vader']['macro_f1']:.3f}")

    with tempfile.TemporaryDirectory() as tmp:
        simulate(SimulationConfig(accounts=400, days=365, seed=11), Path(tmp) / "sim")
        msgs = pd.read_parquet(Path(tmp) / "sim" / "ticket_messages.parquet")
        tone = pd.read_parquet(Path(tmp) / "sim" / "truth" / "messages.parquet")
    msgs = msgs.merge(tone, on="message_id")
    customer = msgs[msgs["author"] == "customer"].sample(3000, random_state=0)
    truth = customer["tone"].replace({"angry": "negative"}).tolist()
    model = SentimentModel(encoder, SentimentHead.load(SHIPPED_HEAD))
    ours, _ = score_texts(customer["body"].tolist(), model)
    results["simulated"] = {"messages": len(customer), "ours": quality(truth, ours["label"].tolist()), "vader": quality(truth, vader_labels(customer["body"].tolist()))}
    r = results["simulated"]
    print(f"simulated customer messages ({len(customer)}): ours accuracy {r['ours']['accuracy']:.3f} macro-F1 {r['ours']['macro_f1']:.3f}; "
          f"VADER accuracy {r['vader']['accuracy']:.3f} macro-F1 {r['vader']['macro_f1']:.3f}")

    started = time.perf_counter()
    score_texts(corpus["text"].tolist(), SentimentModel(TextEncoder(), model.head))  # hand-written, no repeated sentences
    rate = len(corpus) / (time.perf_counter() - started)
    results["throughput_corpus"] = {"messages": len(corpus), "per_second": round(rate), "mean_chars": round(float(corpus["text"].str.len().mean()))}
    print(f"throughput hand-written corpus (no repeats, cold model): {rate:,.0f} messages/s (mean {results['throughput_corpus']['mean_chars']} chars, model load included)")
    lengths = msgs["body"].str.len()
    buckets = {"short (<60 chars)": msgs[lengths < 60], "typical (60-200)": msgs[(lengths >= 60) & (lengths <= 200)], "long (>200)": msgs[lengths > 200]}
    results["throughput"] = {}
    score_texts(["warm up"], model)
    for name, frame in buckets.items():
        texts = frame["body"].drop_duplicates().head(1500).tolist()
        if not texts:
            continue
        started = time.perf_counter()
        score_texts(texts, model)  # no cache: every text through the model
        rate = len(texts) / (time.perf_counter() - started)
        results["throughput"][name] = {"messages": len(texts), "per_second": round(rate), "mean_chars": round(float(np.mean([len(t) for t in texts])))}
        print(f"throughput {name}: {rate:,.0f} messages/s ({len(texts)} distinct messages, mean {results['throughput'][name]['mean_chars']} chars)")
    with tempfile.TemporaryDirectory() as tmp:
        cache = TextCache(Path(tmp) / "c.sqlite")
        texts = msgs["body"].drop_duplicates().head(5000).tolist()
        score_texts(texts, model, cache)
        started = time.perf_counter()
        score_texts(texts, model, cache)
        rate = len(texts) / (time.perf_counter() - started)
        results["throughput"]["cache hit"] = {"messages": len(texts), "per_second": round(rate)}
        print(f"throughput cache hit: {rate:,.0f} messages/s ({len(texts)} known messages)")
    save("sentiment", results)


if __name__ == "__main__":
    main()
