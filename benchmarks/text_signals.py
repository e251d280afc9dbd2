"""Predicted CSAT and CES: how well do they recover the scores customers did not give?

On a simulated base (the simulator knows every ticket's true CSAT and CES): text signals and the
monthly-refitted regressors of `models.outcomes`, then
  - error on answered tickets (each predicted by a regressor that never saw its answer);
  - error on unanswered tickets against their true scores, the case survey bias hides;
  - against the naive fill-in (the mean of answers so far), which inherits the submission bias.
Also: how well rephrasings detected in text match the simulator's count.

    python benchmarks/text_signals.py [--accounts 600] [--encoder cascade|transformer|static]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import tempfile
import time

import numpy as np
import pandas as pd

from benchmarks._record import save


def main() -> None:
    from core.contracts import load_tables
    from models.outcomes import ticket_outcome_inputs
    from pipelines.features import add_message_signals
    from simulation.config import SimulationConfig
    from simulation.simulate import simulate
    from text.encoder import TextEncoder
    from text.sentiment import ENCODERS, ROUTE_BELOW, SHIPPED_HEAD, SentimentHead, SentimentModel
    from text.static import StaticEncoder

    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=600)
    parser.add_argument("--encoder", choices=ENCODERS, default="cascade", help="CHURN_TEXT_ENCODER's choices")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        simulate(SimulationConfig(accounts=args.accounts, days=730, seed=21), Path(tmp) / "sim")
        tables = load_tables(Path(tmp) / "sim").tables
        truth = pd.read_parquet(Path(tmp) / "sim" / "truth" / "tickets.parquet")
    started = time.perf_counter()
    encoder, head = TextEncoder(), SentimentHead.load(SHIPPED_HEAD)
    static = None if args.encoder == "transformer" else StaticEncoder(encoder)
    model = SentimentModel(encoder, head, static=static, route_below=0.0 if args.encoder == "static" else ROUTE_BELOW)
    tables = add_message_signals(tables, model, None)
    seconds = time.perf_counter() - started
    n_messages = len(tables["ticket_messages"])
    print(
        f"text signals for {n_messages:,} messages of {args.accounts} accounts x 730 days in {seconds:.0f} s "
        f"({n_messages / seconds:,.0f} messages/s)"
    )
    outcomes = tables["ticket_outcomes"]
    inputs = ticket_outcome_inputs(tables["tickets"], tables["ticket_events"], tables["message_signals"])
    frame = inputs.merge(outcomes[["ticket_id", "predicted_csat", "predicted_ces"]], on="ticket_id").merge(
        truth, on="ticket_id"
    )
    results = {
        "encoder": args.encoder,
        "accounts": args.accounts,
        "messages": n_messages,
        "signal_seconds": round(seconds, 1),
    }
    for score in ("csat", "ces"):
        pred = frame[f"predicted_{score}"]
        has = pred.notna()
        answered = has & frame[score].notna()
        unanswered = has & frame[score].isna()
        # the naive fill-in: the mean of the answers received before each ticket's month
        month = frame["at"].dt.tz_convert(None).dt.to_period("M").dt.start_time.dt.tz_localize("UTC")
        answers = frame.loc[frame[score].notna(), [f"{score}_at", score]].sort_values(f"{score}_at")
        cum = answers[score].expanding().mean().to_numpy()
        idx = np.searchsorted(answers[f"{score}_at"].to_numpy(), month.to_numpy()) - 1
        naive = np.where(idx >= 0, cum[np.maximum(idx, 0)], np.nan)
        true = frame[f"true_{score}"]
        r = {
            "answered_tickets": int(answered.sum()),
            "unanswered_tickets": int(unanswered.sum()),
            "mae_answered": round(float((pred - frame[score])[answered].abs().mean()), 3),
            "mae_answered_naive": round(float((naive - frame[score])[answered].abs().mean()), 3),
            "mae_unanswered_vs_truth": round(float((pred - true)[unanswered].abs().mean()), 3),
            "mae_unanswered_naive": round(float((naive - true)[unanswered].abs().mean()), 3),
            "bias_unanswered": round(float((pred - true)[unanswered].mean()), 3),
            "bias_unanswered_naive": round(float((naive - true)[unanswered].mean()), 3),
            "corr_unanswered": round(float(np.corrcoef(pred[unanswered], true[unanswered])[0, 1]), 3),
        }
        results[score] = r
        print(
            f"{score.upper()}: answered tickets MAE {r['mae_answered']} (naive mean-of-answers {r['mae_answered_naive']}); "
            f"unanswered vs true score MAE {r['mae_unanswered_vs_truth']} (naive {r['mae_unanswered_naive']}), "
            f"bias {r['bias_unanswered']:+} (naive {r['bias_unanswered_naive']:+}), correlation {r['corr_unanswered']}; "
            f"{r['answered_tickets']:,} answered / {r['unanswered_tickets']:,} unanswered tickets with a prediction"
        )
    per = tables["message_signals"].groupby("ticket_id")["rephrase"].sum()
    true_r = truth.set_index("ticket_id")["rephrasings"].reindex(per.index)
    results["rephrasings"] = {
        "correlation": round(float(np.corrcoef(per, true_r)[0, 1]), 3),
        "exact": round(float((per == true_r).mean()), 3),
        "three_plus_agreement": round(float(((per >= 2) == (true_r >= 2)).mean()), 3),
    }
    print(
        "rephrasings per ticket vs the simulator's count: correlation "
        f"{results['rephrasings']['correlation']}, exact {results['rephrasings']['exact']}, "
        f"agreement on 'asked three times' {results['rephrasings']['three_plus_agreement']}"
    )
    save(f"text_signals_{args.encoder}", results)


if __name__ == "__main__":
    main()
