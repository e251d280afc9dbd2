"""escalation.yaml: the escalation policy shared by support and CS (docs/escalation-practice.md).

Every number of docs/escalation-practice.md is a default here and a key of the file; an unknown key
or an out-of-range value is an error naming the file and the key. The policy's version is a hash of
its content, recorded with every decision, so an audit can tell which rules were in force.
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property

from pydantic import Field, field_validator, model_validator

from core.config.base import Strict
from core.vocabulary import BANDS, HORIZONS

#: the largest share of escalations that can be held out (escalation/holdout.py): beyond half, the
#: comparison group outgrows the treated one
MAX_SHARE = 0.5


class HardTriggers(Strict):
    """Escalate regardless of the model (docs/escalation-practice.md: security, privacy, fraud, legal threats,
    billing disputes on high-value accounts, critical-moment phrases)."""

    security: bool = True
    privacy: bool = True
    fraud: bool = True
    legal_threat: bool = True
    billing_dispute_high_value: bool = True
    critical_moment: bool = True
    #: critical-moment categories (features/text/critical.py) that count as a hard trigger
    critical_categories: tuple[str, ...] = ("cancel", "supervisor", "disappointed", "legal", "chargeback")
    #: account events and critical moments within this many days count as live triggers in the
    #: daily run: 1 = since yesterday's run (the live path sees each ticket as it arrives; older
    #: triggers were escalated then, and re-raising them crowds out the riskiest accounts: on the
    #: 10k simulation, 14 days cut recall at a 5% capacity from 0.30 to 0.19)
    event_lookback_days: int = Field(1, ge=0, le=365)


class Value(Strict):
    """What makes an account high-value, and the renewal window."""

    high_value_ratio: float = Field(
        2.0, gt=0, description="ARR at least this multiple of the average ARR is high value"
    )
    mid_market_ratio: float = Field(
        0.5,
        gt=0,
        description="a segment of the customer's own names no tier: ARR at least this "
        "multiple of the average reads as mid_market (high_value_ratio: enterprise)",
    )
    enterprise_is_high_value: bool = True
    renewal_window_days: int = Field(60, ge=0, le=365, description="a renewal within this many days is near")
    value_factor: float = Field(
        0.8, gt=0, le=1, description="risk thresholds are multiplied by this for a high-value account"
    )
    renewal_factor: float = Field(0.8, gt=0, le=1, description="... and by this when the renewal is near")


class Sentiment(Strict):
    """Sentiment is a multiplier: alone it never escalates; with high value or a near renewal it
    lowers the risk thresholds."""

    frustrated_below: float = Field(
        -0.3, ge=-1, le=1, description="latest customer sentiment at or below this is frustrated"
    )
    worsening_below: float = Field(
        -0.3,
        ge=-2,
        le=0,
        description="sentiment fallen this much since the ticket's first message is frustration building up",
    )
    multiplier: float = Field(
        0.6,
        gt=0,
        le=1,
        description="risk thresholds are multiplied by this for a frustrated high-value or near-renewal account",
    )


class Effort(Strict):
    """Repeated contacts on one issue (docs/escalation-practice.md: 3 contacts = first-contact-resolution failure)."""

    asks_threshold: int = Field(3, ge=2, le=20, description="times the same question has been asked in the ticket")
    #: the case that must escalate (docs/escalation-practice.md): the question asked again `asks_threshold` times,
    #: a frustrated tone, and a high-value account (or a near renewal)
    escalate_with_frustration_and_value: bool = True


class BotConfidence(Strict):
    escalate_below: float = Field(0.40, ge=0, le=1, description="below: hand to a human automatically")
    offer_below: float = Field(
        0.60, ge=0, le=1, description="below (and not under escalate_below): offer the customer the option"
    )
    queue: str = Field(
        "human-review",
        min_length=1,
        description="the human queue of a bot handoff when no route names a more specific one",
    )

    @model_validator(mode="after")
    def _ordered(self) -> BotConfidence:
        if self.offer_below < self.escalate_below:
            raise ValueError(
                f"offer_below ({self.offer_below}) must be at least escalate_below ({self.escalate_below})"
            )
        return self


class Holdout(Strict):
    """A share of the escalations that only crossed a risk threshold is recorded as held out
    instead of sent (escalation/holdout.py), so the effect of escalating can be measured."""

    share: float = Field(
        0.0, description="share of eligible accounts held out, by a stable hash of salt|account_id; 0 = off"
    )
    salt: str = Field("", max_length=200, description="a new salt draws a new holdout group")

    @field_validator("share")
    @classmethod
    def _share(cls, value: float) -> float:
        if not 0 <= value <= MAX_SHARE:
            raise ValueError(f"expected a share of eligible escalations in [0, {MAX_SHARE}] (0 = off)")
        return value


class Monitoring(Strict):
    """The monitors run after each daily scoring (pipelines/monitor.py): a breach alerts through
    the outbox, at most once per day per monitor."""

    destinations: list[str] | None = Field(None, description="names of alerts.destinations; unset: alerts.default")
    top_features: int = Field(
        10, ge=1, le=200, description="drift is measured on the model's this many most important features"
    )
    drift_psi: float = Field(0.25, gt=0, description="feature drift: a breach when any top feature's PSI exceeds this")
    score_psi: float = Field(
        0.25, gt=0, description="score distribution: a breach when the PSI of p_90d exceeds this ..."
    )
    score_mean_shift: float = Field(
        0.5, gt=0, description="... or the mean p_90d moved by more than this share of the reference mean"
    )
    reference_days: int = Field(
        365, ge=1, le=3650, description="the training cutoffs of this many last days are the reference"
    )
    calibration_z: float = Field(
        3.0,
        gt=0,
        description="calibration: a breach when observed churns differ from the predicted sum by more "
        "than this many binomial standard deviations ...",
    )
    calibration_tolerance: float = Field(0.25, ge=0, description="... and by more than this share of the predicted sum")
    min_expected_churns: float = Field(
        10.0, gt=0, description="fewer predicted churns than this in the matured run: not enough data yet"
    )
    history_days: int = Field(
        400, ge=181, le=3650, description="daily score history kept (scores/history/) for the calibration monitor"
    )


class Route(Strict):
    """One routing rule: every condition given must hold; the first matching rule wins."""

    queue: str = Field(min_length=1)
    categories: tuple[str, ...] = ()
    segments: tuple[str, ...] = ()
    bands: tuple[str, ...] = ()
    triggers: tuple[str, ...] = ()
    high_value: bool | None = None

    @field_validator("bands")
    @classmethod
    def _bands(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = set(value) - set(BANDS)
        if unknown:
            raise ValueError(f"unknown band(s) {sorted(unknown)}; expected some of {list(BANDS)}")
        return value


class Windows(Strict):
    """Response windows in minutes by band, and the follow-up after every handoff."""

    critical: int = Field(30, gt=0)
    high: int = Field(240, gt=0)
    watch: int = Field(1440, gt=0)
    frustrated: int = Field(15, gt=0, description="an actively frustrated customer: 15-30 minutes whatever the band")
    follow_up_hours: int = Field(24, gt=0)
    expire_after_hours: int = Field(
        336,
        gt=0,
        description="an active escalation nobody updated (no repeat, no status change) for this long "
        "is expired by the relay: 14 days by default",
    )


class Alerts(Strict):
    """Where alerts go: per queue, a list of destinations (names of `destinations`)."""

    destinations: dict[str, dict] = Field(default_factory=dict, description="name -> {kind: slack|webhook, url: ...}")
    by_queue: dict[str, list[str]] = Field(default_factory=dict)
    default: list[str] = Field(default_factory=list)
    by_owner: dict[str, list[str]] = Field(
        default_factory=dict,
        description="owner -> destinations for that owner's follow-up reminders "
        "(else the queue's destinations, the owner named in the message)",
    )
    min_band: str = "high"
    max_attempts: int = Field(8, ge=1, le=100)
    backoff_seconds: float = Field(2.0, gt=0)
    max_backoff_seconds: float = Field(
        3600.0,
        gt=0,
        description="the longest wait between two attempts of one alert, whatever backoff_seconds * 2**n says",
    )
    timeout_seconds: float = Field(5.0, gt=0)

    @model_validator(mode="after")
    def _known(self) -> Alerts:
        for queue, names in {**self.by_queue, "default": self.default}.items():
            missing = [n for n in names if n not in self.destinations]
            if missing:
                raise ValueError(
                    f"queue {queue!r} sends to unknown destination(s) {missing}; define them under alerts.destinations"
                )
        for owner, names in self.by_owner.items():
            missing = [n for n in names if n not in self.destinations]
            if missing:
                raise ValueError(
                    f"by_owner {owner!r} sends to unknown destination(s) {missing}; define them under alerts.destinations"
                )
        for name, spec in self.destinations.items():
            if spec.get("kind") not in ("slack", "webhook") or not str(spec.get("url", "")).startswith(
                ("http://", "https://")
            ):
                raise ValueError(
                    f"destination {name!r}: expected {{kind: slack|webhook, url: http(s)://...}}, got {spec}"
                )
        if self.min_band not in BANDS:
            raise ValueError(f"min_band {self.min_band!r}: expected one of {list(BANDS)}")
        return self


class EscalationPolicy(Strict):
    """config/escalation.yaml."""

    risk_thresholds: dict[int, float] = Field(
        default_factory=lambda: {30: 0.20, 60: 0.30, 90: 0.40, 180: 0.60},
        description="escalate (band high) when P(churn within h days) reaches the threshold",
    )
    watch_thresholds: dict[int, float] = Field(
        default_factory=lambda: {90: 0.20, 180: 0.35}, description="band watch: on the CS radar, no interruption"
    )
    hard_triggers: HardTriggers = HardTriggers()
    value: Value = Value()
    sentiment: Sentiment = Sentiment()
    effort: Effort = Effort()
    bot_confidence: BotConfidence = BotConfidence()
    routes: tuple[Route, ...] = (
        Route(queue="security-response", triggers=("security", "privacy", "fraud")),
        Route(queue="legal-cs", triggers=("legal_threat",)),
        Route(queue="retention-l2", categories=("billing",), segments=("enterprise",)),
        Route(queue="retention-l2", triggers=("billing_dispute_high_value",)),
        Route(queue="human-review", categories=("technical", "bug", "security"), high_value=True),
        Route(queue="cs-priority", bands=("critical", "high"), high_value=True),
    )
    default_queue: str = "cs-standard"
    windows: Windows = Windows()
    cooldown_hours: int = Field(
        72,
        ge=0,
        le=24 * 90,
        description="a repeat for the same account and reason within this updates the open escalation",
    )
    alerts: Alerts = Alerts()
    holdout: Holdout = Holdout()
    monitoring: Monitoring = Monitoring()

    @field_validator("risk_thresholds", "watch_thresholds")
    @classmethod
    def _thresholds(cls, value: dict[int, float]) -> dict[int, float]:
        for h, p in value.items():
            if h not in HORIZONS:
                raise ValueError(f"horizon {h}: expected one of {list(HORIZONS)}")
            if not 0 < p <= 1:
                raise ValueError(f"threshold {p} at {h} days: expected a probability in (0, 1]")
        return value

    @model_validator(mode="after")
    def _monitoring_destinations(self) -> EscalationPolicy:
        missing = [n for n in self.monitoring.destinations or () if n not in self.alerts.destinations]
        if missing:
            raise ValueError(
                f"monitoring.destinations names unknown destination(s) {missing}; define them under alerts.destinations"
            )
        return self

    @cached_property
    def version(self) -> str:
        """Content hash: the same policy always has the same version."""
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:12]
