"""features.yaml: the tunable definitions of the point-in-time features, the per-message text
signals (`signals:`) and the predicted CSAT/CES per ticket (`outcomes:`)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from core.config.base import Strict


class SignalParams(Strict):
    """features.yaml `signals:` (features/text/signals.py; the live path of the API uses
    `rephrase_similarity` too)."""

    # Cosines mean different things in different embedding spaces, so by default each encoder brings
    # its own thresholds (`rephrase_similarity`, `repeat_similarity` on TextEncoder and StaticEncoder),
    # calibrated on simulated tickets against the simulator's own count of rephrasings, and for
    # repeats at the same share of tickets flagged (about 3%). Figures: benchmarks/text_signals.py.
    rephrase_similarity: float | None = Field(
        None, gt=0, lt=1, description="cosine similarity above which a message asks an earlier question again"
    )
    repeat_similarity: float | None = Field(
        None, gt=0, lt=1, description="cosine similarity above which a new ticket repeats an earlier one"
    )
    repeat_window_days: int = Field(30, gt=0, description="how far back a repeated ticket is looked for")
    lookback: int = Field(8, gt=0, description="earlier messages (or tickets) compared with each one")

    def within(self, space: Any) -> SignalParams:
        """These parameters with the thresholds left unset taken from the embedding space `space` (an encoder)."""
        return self.model_copy(
            update={
                "rephrase_similarity": self.rephrase_similarity or space.rephrase_similarity,
                "repeat_similarity": self.repeat_similarity or space.repeat_similarity,
            }
        )


class OutcomeParams(Strict):
    """features.yaml `outcomes:`: the monthly regressors of predicted CSAT and CES (models/outcomes.py)."""

    min_answers: int = Field(150, gt=10, description="answers needed before a month's regressor is fitted")
    n_estimators: int = Field(150, gt=0)
    num_leaves: int = Field(15, gt=1)
    learning_rate: float = Field(0.05, gt=0)


class FeatureParams(Strict):
    """features.yaml: tunable definitions of the features (features/context.py); logged with every model."""

    response_target_hours: float = Field(
        24.0, gt=0, description="first-response target; a slower first response is a breach"
    )
    healthy_login_interval_days: float = Field(3.5, gt=0, description="healthy accounts log in every 3-4 days")
    repeat_window_days: int = Field(
        30, gt=0, description="a ticket repeats an issue if the same category came up this many days before"
    )
    unanswered_after_hours: float = Field(
        48.0, gt=0, description="an agent message unanswered this long on an open ticket counts as stalled"
    )
    account_block: int = Field(
        5000, gt=0, description="accounts per block: data read, validated and featurised together (memory vs speed)"
    )
    signals: SignalParams = Field(default_factory=SignalParams, description="per-message text signals")
    outcomes: OutcomeParams = Field(default_factory=OutcomeParams, description="predicted CSAT and CES per ticket")
