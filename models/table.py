"""Bring your own snapshot table: one row per customer, one yes/no label (`churn train-table`).

The table arrives prepared (models/table_prep.py: `prepare_table` reads a messy CSV's columns into
a model matrix and notes every decision it took).

The model is chosen per table among five honest candidates: LightGBM with `LGBMClassifier`
defaults, a regularised LightGBM (many shallow, slow, bagged trees), a spline logistic regression
(median imputation with missing indicators, scaling, one-hot categories, cubic splines on the
numbers), and the mean of the spline logistic's probability with each LightGBM's. Boosting finds
thresholds and interactions, the additive model is steadier on smooth effects such as tenure, and
which wins depends on the table. Inside every cross-validation fold a stratified inner CV of the
fold's training rows picks one, so the outer figures measure the choosing itself
(`cross_validate_table` also reports each candidate alone on the same folds); the final model uses
the candidate the same rule picks from the outer folds. The rule (`winner`) takes the earliest
candidate within `TableParams.tolerance` of the best inner score, blends first: on a few thousand
rows the inner scores are too noisy to tell candidates apart by less, and the steadier blend is
the safer pick when they tie.

Nothing here reads files or talks to MLflow: the caller reads the CSV into a DataFrame and logs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from core.errors import InputError
from models import lgb_threads
from models.table_prep import MISSING_LEVEL, PreparedTable, apply_columns

Candidate = Literal["blend", "blend_defaults", "spline_logistic", "lightgbm", "lightgbm_defaults"]
CANDIDATES: tuple[Candidate, ...] = get_args(Candidate)


class TableParams(BaseModel):
    """The candidates and how they are chosen; the regularised LightGBM's small-table defaults: many
    shallow, slow, bagged trees with strong leaf regularisation (few rows overfit fast; no early
    stopping, so nothing is chosen on held-out rows). Leaf minimums shrink on tiny tables (`_lgb_params`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_estimators: int = Field(600, gt=0)
    learning_rate: float = Field(0.01, gt=0)
    num_leaves: int = Field(8, gt=1)
    max_depth: int = Field(-1, description="-1: no limit")
    min_child_samples: int = Field(
        40, gt=0, description="capped at 10% of the training rows (at least 5) so tiny tables still split"
    )
    subsample: float = Field(0.8, gt=0, le=1)
    colsample_bytree: float = Field(0.8, gt=0, le=1)
    reg_alpha: float = Field(0.0, ge=0)
    reg_lambda: float = Field(5.0, ge=0)
    min_data_per_group: int = Field(
        50, gt=0, description="rows per category group in a categorical split; capped like min_child_samples"
    )
    cat_smooth: float = Field(10.0, ge=0)
    logistic_weight: float = Field(
        0.5, gt=0, lt=1, description="weight of the spline logistic regression's probability in the blends"
    )
    logistic_c: float = Field(0.1, gt=0, description="inverse L2 strength of the spline logistic regression")
    spline_knots: int = Field(
        5, ge=0, description="knots of the spline logistic regression's spline terms; 0 = straight lines"
    )
    candidates: tuple[Candidate, ...] = Field(
        CANDIDATES,
        min_length=1,
        description="what to choose among, in order of "
        "preference (see tolerance); tables too small to choose on get the first",
    )
    tolerance: float = Field(
        0.005, ge=0, description="the earliest candidate whose inner-CV ROC-AUC is within this of the best is chosen"
    )
    inner_folds: int = Field(3, ge=2, description="folds of the inner CV that chooses a candidate")
    folds: int = Field(5, ge=2)
    seed: int = 0
    num_threads: int = Field(1, ge=0, description="LightGBM threads; 0 = all cores")


# -- models --------------------------------------------------------------------------------------
def _matrix(X: pd.DataFrame) -> np.ndarray:
    """LightGBM input: numbers as they are, categories as their level codes (missing -> NaN)."""
    cols = [
        X[c].cat.codes.replace(-1, np.nan) if isinstance(X[c].dtype, pd.CategoricalDtype) else X[c] for c in X.columns
    ]
    return np.column_stack([col.to_numpy(dtype="float64", na_value=np.nan) for col in cols])


def _categorical_positions(X: pd.DataFrame) -> list[int]:
    return [i for i, c in enumerate(X.columns) if isinstance(X[c].dtype, pd.CategoricalDtype)]


def _lgb_params(params: TableParams, n_rows: int) -> dict:
    """The regularised LightGBM's parameters; the per-leaf and per-group minimums are capped at 10%
    of the rows so a table of a hundred rows can still grow trees."""
    cap = max(5, n_rows // 10)
    return {
        "objective": "binary",
        "learning_rate": params.learning_rate,
        "num_leaves": params.num_leaves,
        "max_depth": params.max_depth,
        "min_data_in_leaf": min(params.min_child_samples, cap),
        "bagging_fraction": params.subsample,
        "bagging_freq": 1 if params.subsample < 1 else 0,
        "feature_fraction": params.colsample_bytree,
        "lambda_l1": params.reg_alpha,
        "lambda_l2": params.reg_lambda,
        "min_data_per_group": min(params.min_data_per_group, cap),
        "cat_smooth": params.cat_smooth,
        **_lgb_runtime(params),
    }


def _lgb_runtime(params: TableParams) -> dict:
    return {
        "seed": params.seed,
        "num_threads": params.num_threads,
        "deterministic": True,
        "force_col_wise": True,
        "verbosity": -1,
    }


def _fit_lightgbm(X: pd.DataFrame, y: np.ndarray, params: TableParams, defaults: bool = False):
    """The regularised LightGBM, or with `defaults` what `lightgbm.LGBMClassifier()` fits (LightGBM's
    own defaults: 100 trees of 31 leaves at learning rate 0.1, 20 rows a leaf, no bagging, no penalty)."""
    import lightgbm as lgb

    data = lgb.Dataset(
        _matrix(X),
        label=y,
        feature_name=[f"f{i}" for i in range(X.shape[1])],
        categorical_feature=_categorical_positions(X),
        free_raw_data=True,
    )
    with lgb_threads.threads(params.num_threads):
        if defaults:
            return lgb.train({"objective": "binary", **_lgb_runtime(params)}, data, num_boost_round=100)
        return lgb.train(_lgb_params(params, len(y)), data, num_boost_round=params.n_estimators)


def _logistic_input(X: pd.DataFrame) -> pd.DataFrame:
    """Categories as text with missing as its own level (unseen levels at predict time land there too)."""
    out = X.copy()
    for c in _categorical_names(X):
        out[c] = X[c].astype(object).where(X[c].notna(), MISSING_LEVEL)
    return out


def _categorical_names(X: pd.DataFrame) -> list[str]:
    return [c for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)]


def _fit_logistic(X: pd.DataFrame, y: np.ndarray, c: float = 1.0, knots: int = 0):
    """Logistic regression on median-imputed numbers with missing indicators, scaled, and one-hot
    categories. With `knots` > 0, numbers with more than 10 distinct training values also get cubic
    spline terms (knots at quantiles), so the linear model can bend (tenure, spend) like a GAM.
    `knots=0, c=1` is the plain baseline of the reference figures."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, SplineTransformer, StandardScaler

    cats = _categorical_names(X)
    nums = [col for col in X.columns if col not in cats]
    parts = [
        ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()), nums),
        ("cat", OneHotEncoder(handle_unknown="ignore"), cats),
    ]
    smooth = [col for col in nums if X[col].nunique() > 10] if knots else []
    if smooth:
        parts.append(
            (
                "spline",
                make_pipeline(
                    SimpleImputer(strategy="median"),
                    SplineTransformer(n_knots=knots, knots="quantile"),
                    StandardScaler(),
                ),
                smooth,
            )
        )
    return make_pipeline(ColumnTransformer(parts), LogisticRegression(C=c, max_iter=5000)).fit(_logistic_input(X), y)


def _blas_threads(params: TableParams):
    """At most `num_threads` BLAS threads for the logistic regressions: on these small matrices extra
    threads only wait for each other, and on a busy machine they multiply the fitting time."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=params.num_threads or None, user_api="blas")


def _fit_part(part: str, X: pd.DataFrame, y: np.ndarray, params: TableParams):
    if part == "spline_logistic":
        return _fit_logistic(X, y, params.logistic_c, params.spline_knots)
    return _fit_lightgbm(X, y, params, defaults=part == "lightgbm_defaults")


def _predict_part(model, X: pd.DataFrame) -> np.ndarray:
    if hasattr(model, "predict_proba"):
        return model.predict_proba(_logistic_input(X))[:, 1]
    return lgb_threads.predict(model, _matrix(X), model.params.get("num_threads", 0))  # as trained


def candidate_weights(candidate: str, params: TableParams) -> dict[str, float]:
    """The parts of a candidate and the weight of each part's probability in the candidate's."""
    blends = {"blend": "lightgbm", "blend_defaults": "lightgbm_defaults"}
    if candidate in blends:
        return {blends[candidate]: 1 - params.logistic_weight, "spline_logistic": params.logistic_weight}
    return {candidate: 1.0}


def _candidate_probabilities(
    X_train: pd.DataFrame, y_train: np.ndarray, X_test: pd.DataFrame, params: TableParams
) -> dict[str, np.ndarray]:
    """Every candidate's probabilities on the test rows; each part is fitted once on the training rows."""
    weights = {c: candidate_weights(c, params) for c in params.candidates}
    parts = {part for w in weights.values() for part in w}
    p = {part: _predict_part(_fit_part(part, X_train, y_train, params), X_test) for part in sorted(parts)}
    return {c: np.asarray(sum(share * p[part] for part, share in w.items())) for c, w in weights.items()}


def choose_candidate(X: pd.DataFrame, y: np.ndarray, params: TableParams) -> dict[str, float]:
    """Each candidate's mean ROC-AUC over a stratified, seeded `params.inner_folds`-fold CV of these
    rows (every part fitted on the inner training rows only); empty when there is nothing to choose
    (one candidate, or fewer than two rows of the rarer label)."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    folds = min(params.inner_folds, int(min(y.sum(), len(y) - y.sum())))
    if len(params.candidates) == 1 or folds < 2:
        return {}
    aucs: dict[str, list[float]] = {c: [] for c in params.candidates}
    with _blas_threads(params):
        for train, test in StratifiedKFold(n_splits=folds, shuffle=True, random_state=params.seed).split(
            np.zeros(len(y)), y
        ):
            for c, p in _candidate_probabilities(X.iloc[train], y[train], X.iloc[test], params).items():
                aucs[c].append(float(roc_auc_score(y[test], p)))
    return {c: float(np.mean(v)) for c, v in aucs.items()}


def winner(scores: dict[str, float], params: TableParams) -> str:
    """The earliest of `params.candidates` whose score is within `params.tolerance` of the best
    score; the first candidate when there are no scores (nothing was compared)."""
    known = [c for c in params.candidates if c in scores]
    if not known:
        return params.candidates[0]
    best = max(scores[c] for c in known)
    return next(c for c in known if scores[c] >= best - params.tolerance - 1e-12)


def margin(scores: dict[str, float], chosen: str) -> float | None:
    """The chosen candidate's score minus the best other's (negative when a steadier candidate was
    preferred within the tolerance; None with nothing to compare)."""
    others = [v for c, v in scores.items() if c != chosen]
    return scores[chosen] - max(others) if others and chosen in scores else None


def model_description(candidate: str, params: TableParams) -> str:
    """One line for notes, JSON and MLflow: what a candidate's probability is."""
    parts = {
        "lightgbm_defaults": "LightGBM with LGBMClassifier defaults (100 trees, 31 leaves, learning rate 0.1)",
        "lightgbm": f"regularised LightGBM ({params.n_estimators} trees, {params.num_leaves} leaves, "
        f"learning rate {params.learning_rate:g}, L2 {params.reg_lambda:g})",
        "spline_logistic": (
            f"spline logistic regression (C={params.logistic_c:g}, {params.spline_knots} knots)"
            if params.spline_knots
            else f"logistic regression (C={params.logistic_c:g})"
        ),
    }
    weights = candidate_weights(candidate, params)
    if len(weights) == 1:
        return parts[candidate]
    return "mean of probabilities: " + " + ".join(f"{w:g} x {parts[part]}" for part, w in weights.items())


def _importance(model, X: pd.DataFrame) -> np.ndarray:
    """Each feature's share of a part's total: LightGBM split gain; for the logistic regression the
    spread (std over these rows) of the feature's terms in the log-odds, which is how far its terms
    move when the feature is held at one value (the model is additive)."""
    if not hasattr(model, "predict_proba"):
        score = model.feature_importance(importance_type="gain").astype(float)
    else:
        frame = _logistic_input(X)
        full = model.decision_function(frame)
        score = np.array(
            [np.std(full - model.decision_function(frame.assign(**{c: frame[c].iloc[0]}))) for c in X.columns]
        )
    return score / max(float(score.sum()), 1e-12)


@dataclass
class TableModel:
    """The final model, fitted on every row: the chosen candidate's parts and the weight of each
    part's probability (see `candidate_weights`)."""

    parts: dict[str, object]
    weights: dict[str, float]
    candidate: str
    columns: dict[str, list[str] | None]
    params: TableParams
    positive_label: str
    importance: pd.DataFrame
    label: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def features(self) -> list[str]:
        return list(self.columns)

    def predict_prepared(self, X: pd.DataFrame) -> np.ndarray:
        """Probabilities for a matrix already prepared like `PreparedTable.X`."""
        return np.asarray(sum(w * _predict_part(self.parts[part], X) for part, w in self.weights.items()), dtype=float)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """P(label == positive_label) for raw rows with the original columns (extra columns are ignored)."""
        return self.predict_prepared(apply_columns(frame, self.columns))

    def feature_importance(self) -> pd.DataFrame:
        """Each feature's `share` of the model (the parts' shares, weighted like their probabilities),
        then one column per part (LightGBM: share of split gain; logistic: share of log-odds spread),
        largest first. Measured on the training rows when the model was fitted."""
        return self.importance.copy()


def fit_table_model(
    prepared: PreparedTable, params: TableParams | None = None, candidate: str | None = None
) -> TableModel:
    """The final model on every row, for scoring new rows of the same table layout: `candidate`, or
    without it the winner of `choose_candidate` on every row (`cross_validate_table` gives its
    `chosen`, picked by its own folds, so a caller that ran it need not choose again)."""
    params = params or TableParams()
    if candidate is not None and candidate not in CANDIDATES:
        raise ValueError(f"candidate {candidate!r}: expected one of {', '.join(CANDIDATES)}")
    X, y = prepared.X, prepared.y
    scores = {} if candidate else choose_candidate(X, y, params)
    candidate = candidate or winner(scores, params)
    weights = candidate_weights(candidate, params)
    with _blas_threads(params):
        parts = {part: _fit_part(part, X, y, params) for part in weights}
        shares = {part: _importance(model, X) for part, model in parts.items()}
    importance = pd.DataFrame(
        {"feature": list(X.columns), "share": sum(w * shares[part] for part, w in weights.items()), **shares}
    ).sort_values("share", ascending=False, ignore_index=True)
    chose = f" (inner CV ROC-AUC {scores[candidate]:.4f})" if scores else ""
    return TableModel(
        parts,
        weights,
        candidate,
        prepared.columns,
        params,
        prepared.positive_label,
        importance,
        prepared.label,
        [*prepared.notes, f"model: {candidate}: {model_description(candidate, params)}{chose}"],
    )


def _scores(y: np.ndarray, p: np.ndarray) -> dict:
    from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "brier": float(np.mean((p - y) ** 2)),
        "log_loss": float(log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1])),
    }


def _fold(
    X_train: pd.DataFrame, y_train: np.ndarray, X_test: pd.DataFrame, y_test: np.ndarray, params: TableParams
) -> dict:
    """One outer fold: the candidate the inner CV of the training rows chooses, scored on the test
    rows, beside every candidate and the plain logistic baseline fitted on the same training rows."""
    from sklearn.metrics import roc_auc_score

    inner = choose_candidate(X_train, y_train, params)
    chosen = winner(inner, params)
    p = _candidate_probabilities(X_train, y_train, X_test, params)
    p_base = _predict_part(_fit_logistic(X_train, y_train), X_test)
    return {
        "rows": len(y_test),
        "positives": int(y_test.sum()),
        **_scores(y_test, p[chosen]),
        "chosen": chosen,
        "chosen_inner_margin": margin(inner, chosen),
        **{f"{c}_inner_roc_auc": inner.get(c) for c in params.candidates},
        **{f"{c}_roc_auc": float(roc_auc_score(y_test, p[c])) for c in params.candidates},
        "baseline_logistic_roc_auc": float(roc_auc_score(y_test, p_base)),
    }


def cross_validate_table(
    prepared: PreparedTable, params: TableParams | None = None, progress: Callable[[str], None] | None = None
) -> dict:
    """Stratified k-fold figures (`roc_auc_mean` ...) of the whole choosing procedure: in each fold an
    inner CV of the training rows picks a candidate, which is scored on the test rows. Beside it,
    every candidate alone and the plain logistic baseline on the same folds (`<candidate>_roc_auc_mean`),
    how often each won (`wins`), and `chosen`: what `winner` picks from the candidates' means over
    these folds, for the final model. Nothing (choice, trees, weights, knots, levels) sees a fold's test rows."""
    from sklearn.model_selection import StratifiedKFold

    params = params or TableParams()
    X, y = prepared.X, prepared.y
    minority = int(min(y.sum(), len(y) - y.sum()))
    if minority < params.folds:
        raise InputError(
            f"label column '{prepared.label}': only {minority} row(s) of the rarer value; expected at least "
            f"{params.folds}, one per fold (folds = {params.folds})"
        )
    split = StratifiedKFold(n_splits=params.folds, shuffle=True, random_state=params.seed)
    per_fold = []
    with _blas_threads(params):
        for k, (train, test) in enumerate(split.split(np.zeros(len(y)), y), start=1):
            row = {"fold": k, **_fold(X.iloc[train], y[train], X.iloc[test], y[test], params)}
            per_fold.append(row)
            if progress:
                ahead = row["chosen_inner_margin"]
                inner = (
                    ""
                    if ahead is None
                    else f" (inner ROC-AUC {row[row['chosen'] + '_inner_roc_auc']:.4f}, {ahead:+.4f} on the best other)"
                )
                progress(
                    f"fold {k}/{params.folds}: {len(train):,} training rows, {len(test):,} test rows; "
                    f"chose {row['chosen']}{inner}; ROC-AUC {row['roc_auc']:.4f}"
                )

    folds = pd.DataFrame(per_fold)

    def r(value: float) -> float:
        return round(float(value), 4)

    def mean_std(column: str, name: str) -> dict:
        return {f"{name}_mean": r(folds[column].mean()), f"{name}_std": r(folds[column].std(ddof=0))}

    means: dict[str, float] = {c: float(folds[f"{c}_roc_auc"].mean()) for c in params.candidates}
    chosen = winner(means, params)
    ahead = margin(means, chosen)
    description = model_description(chosen, params)
    selection = (
        f"chosen in each fold by a stratified {params.inner_folds}-fold CV of its training rows: the earliest of "
        f"{', '.join(params.candidates)} within {params.tolerance:g} ROC-AUC of the best; the final model's by the "
        f"same rule on these {params.folds} folds"
    )
    return {
        "folds": params.folds,
        "rows": len(y),
        "positives": int(y.sum()),
        "base_rate": r(y.mean()),
        "label": prepared.label,
        "positive_label": prepared.positive_label,
        "features": list(X.columns),
        "model": description,
        "chosen": chosen,
        "chosen_margin": None if ahead is None else r(ahead),
        "selection": selection,
        "inner_folds": params.inner_folds,
        **mean_std("roc_auc", "roc_auc"),
        "pr_auc_mean": r(folds["pr_auc"].mean()),
        "brier_mean": r(folds["brier"].mean()),
        "log_loss_mean": r(folds["log_loss"].mean()),
        **{k: v for c in params.candidates for k, v in mean_std(f"{c}_roc_auc", f"{c}_roc_auc").items()},
        **mean_std("baseline_logistic_roc_auc", "baseline_logistic_roc_auc"),
        "wins": {c: int((folds["chosen"] == c).sum()) for c in params.candidates},
        "candidates": {c: model_description(c, params) for c in params.candidates},
        "per_fold": [{key: (r(v) if isinstance(v, float) else v) for key, v in row.items()} for row in per_fold],
        "params": params.model_dump(mode="json"),
        "notes": [
            *prepared.notes,
            f"model: {chosen}: {description}",
            f"selection: {selection}",
            "baseline: plain logistic regression (median imputation with missing indicators, scaling, one-hot), same folds",
        ],
    }
