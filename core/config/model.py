"""model.yaml: risk-curve training (`curve:`), the backtest (`backtest:`), the promotion policy
(`promotion:`) and when training goes to a Dask cluster (`dask:`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationError, field_validator

from core.config.base import Strict
from core.errors import describe_validation
from core.vocabulary import HORIZONS

#: What a search candidate may set (model.yaml `curve.search`): capacity and regularisation.
SEARCHABLE = ("learning_rate", "num_leaves", "min_child_samples", "reg_lambda", "colsample_bytree", "subsample")


class CurveParams(Strict):
    """model.yaml `curve:`: LightGBM and training parameters (models/curve.py).

    These defaults are what a `curve:` section of your own leaves out; the curve shipped in
    model.yaml (`ModelConfig.curve`) sets more (small trees, strong shrinkage, a capacity search).
    """

    formulation: Literal["hazard", "per_horizon"] = Field(
        "hazard",
        description="'hazard': one discrete-time hazard model over the horizon intervals; "
        "'per_horizon': one classifier per horizon, made monotone by a running maximum",
    )
    n_estimators: int = Field(800, gt=0)
    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(15, gt=1)
    min_child_samples: int = Field(100, gt=0)
    subsample: float = Field(0.8, gt=0, le=1)
    colsample_bytree: float = Field(0.8, gt=0, le=1)
    reg_lambda: float = Field(1.0, ge=0)
    early_stopping_rounds: int = Field(50, ge=0, description="0: no early stopping (grow n_estimators trees)")
    valid_fraction: float = Field(
        0.2,
        gt=0,
        lt=1,
        description="share of the latest training cutoffs held out for early stopping, the search and calibration",
    )
    valid_gap_days: int = Field(
        0,
        ge=0,
        description="days between the last fitting cutoff and the first held-out cutoff (the fitting "
        "labels are censored at the first held-out cutoff: no gap is needed to keep outcomes apart)",
    )
    calibrate: bool = True
    #: Directions the risk must follow, all else equal (+1 never lowers risk as the feature grows,
    #: -1 never raises it); enforced by LightGBM's monotone constraints, so behaviour cannot flip
    #: by accident of the data. Features absent from the panel are ignored.
    monotone: dict[str, int] = Field(
        default_factory=lambda: {
            "days_since_last_login": 1,
            "zero_usage_streak_days": 1,
            "zero_usage_days_30d": 1,
            "critical_moments_90d": 1,
            "cancel_mentions_90d": 1,
            "legal_threat_180d": 1,
            "billing_dispute_180d": 1,
            "nps_last": -1,
            "csat_mean_180d": -1,
        }
    )
    seed: int = 42
    num_threads: int = 0
    #: Candidates for the capacity and regularisation, in order of preference (each sets some of
    #: SEARCHABLE; the keys above fill the rest). fit_curve grows each on the fitting rows and keeps
    #: them all, averaged (`blend`), or one by held-out log loss (choose_candidates), so every
    #: backtest fold decides inside its own training window. Empty: the keys above.
    search: tuple[dict[str, int | float], ...] = ()
    blend: bool = Field(
        False,
        description="the curve is the mean of every search candidate (their log-odds averaged into one booster), "
        "not the one the held-out loss chooses",
    )

    @field_validator("monotone")
    @classmethod
    def _directions(cls, monotone: dict[str, int]) -> dict[str, int]:
        wrong = sorted(name for name, direction in monotone.items() if direction not in (-1, 0, 1))
        if wrong:
            raise ValueError(f"{', '.join(wrong)}: expected a direction of 1 (risk never falls as it grows), -1 or 0")
        return monotone

    @field_validator("search")
    @classmethod
    def _searchable(cls, search: tuple[dict[str, int | float], ...]) -> tuple[dict[str, int | float], ...]:
        for i, candidate in enumerate(search, 1):
            unknown = sorted(set(candidate) - set(SEARCHABLE))
            if unknown:
                raise ValueError(
                    f"candidate {i} sets {', '.join(unknown)}; a candidate may set only {', '.join(SEARCHABLE)}"
                )
            try:
                CurveParams(**candidate)
            except ValidationError as exc:
                raise ValueError(f"candidate {i}: " + describe_validation(exc, depth=1)) from None
        return search

    def candidates(self) -> list[CurveParams]:
        """The parameters each search candidate trains with (these alone without a search). The
        i-th (from 0) draws its bagged rows and sampled columns with `seed + i`: with one seed for
        all, the blend averaged three fits that share their draw, and that draw alone moved the
        2,000-account base's 90-day ROC-AUC by up to 0.009 (docs/models.md)."""
        base = self.model_dump(exclude={"search"})
        return [
            CurveParams(**{**base, **candidate, "seed": self.seed + i}) for i, candidate in enumerate(self.search)
        ] or [self]


class PromotionPolicy(Strict):
    """model.yaml `promotion:` (models/promotion.py)."""

    metric: str = Field("roc_auc", description="backtest metric compared (higher is better)")
    horizons: tuple[int, ...] = HORIZONS
    tolerance: float = Field(0.005, ge=0, description="how much worse than the champion the challenger may be")
    max_ece: float = Field(0.02, gt=0, description="calibration bound at every horizon")
    first_against: Literal["rules", "none"] = Field(
        "rules",
        description="without a champion, what the challenger's metric is held to: 'rules', the rules baseline of its "
        "own backtest (by the same tolerance); 'none', the calibration bound alone",
    )


class Backtest(Strict):
    """model.yaml `backtest:` (models/backtest.py); `churn evaluate --folds/--budget` override it."""

    folds: int = Field(4, ge=1, description="rolling-origin folds, one test cutoff each")
    budget: float = Field(0.05, gt=0, lt=1, description="share of accounts CS can work each cutoff (recall at budget)")


class Dask(Strict):
    """model.yaml `dask:`: with CHURN_DASK_ADDRESS set, which panels train on the cluster."""

    min_snapshots: int = Field(
        1_000_000, ge=0, description="panels of at least this many snapshots train on the cluster (lightgbm.dask)"
    )


def _shipped_curve() -> CurveParams:
    """The curve model.yaml ships: small trees with strong shrinkage (churn is rare: a leaf's few
    events are shrunk hard towards no change), a cap on trees that early stopping ends long
    before, and candidates for other bases (docs/models.md)."""
    return CurveParams(
        n_estimators=2000,
        learning_rate=0.1,
        num_leaves=4,
        min_child_samples=50,
        colsample_bytree=0.5,
        reg_lambda=200,
        search=(
            {},
            {"num_leaves": 2, "min_child_samples": 20, "reg_lambda": 10},
            {
                "num_leaves": 15,
                "min_child_samples": 100,
                "reg_lambda": 1,
                "learning_rate": 0.05,
                "colsample_bytree": 0.8,
            },
        ),
        blend=True,
    )


class ModelConfig(Strict):
    """model.yaml: curve parameters, backtest settings, the promotion policy and the Dask threshold.
    A section given in the file replaces the shipped one; keys it leaves out take their defaults."""

    curve: CurveParams = Field(default_factory=_shipped_curve)
    backtest: Backtest = Field(default_factory=Backtest)
    promotion: PromotionPolicy = Field(default_factory=PromotionPolicy)
    dask: Dask = Field(default_factory=Dask)

    @property
    def folds(self) -> int:
        return self.backtest.folds

    @property
    def budget(self) -> float:
        return self.backtest.budget

    @property
    def dask_min_snapshots(self) -> int:
        """With CHURN_DASK_ADDRESS set, panels of at least this many snapshots train on the cluster."""
        return self.dask.min_snapshots
