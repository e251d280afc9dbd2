"""Bring your own snapshot table: one row per customer, one yes/no label (`churn train-table`).

Business CSVs arrive messy: numbers stored as text with " " for unknown, yes/no labels, id and
free-text columns, dates. `prepare_table` turns such a frame into a model matrix and writes down
every decision it took as a plain sentence (`notes`), so the person who brought the table can check
them; anything it cannot decide safely is an `InputError` naming the column and what was expected.

The model is a regularised LightGBM blended with a spline logistic regression (median imputation
with missing indicators, scaling, one-hot categories, cubic splines on the numbers): the reported
probability is the weighted mean of the two probabilities (`TableParams.logistic_weight`, 0.5 by
default), in cross-validation and in the final model alike. On small tables neither model wins
everywhere: boosting finds thresholds and interactions, the additive model is steadier on smooth
effects such as tenure, and their mean beats either (`cross_validate_table` reports both parts and
a plain logistic baseline on the same folds). Set `logistic_weight=0` for LightGBM alone.

Nothing here reads files or talks to MLflow: the caller reads the CSV into a DataFrame and logs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from core.errors import InputError

MIN_ROWS = 50
MAX_LEVELS = 200
MAX_UNIQUE_SHARE = 0.5
DATE_SHARE = 0.9
MISSING_LEVEL = "(missing)"

#: Label values read as "churned" (1) and "stayed" (0), compared lower-cased with "_"/"-" as spaces;
#: a value also matches on its first word ("Attrited Customer", "Existing Customer").
POSITIVE = frozenset({
    "yes", "y", "true", "t", "1", "churn", "churned", "churner", "left", "leaver", "lost", "cancelled", "canceled",
    "cancel", "exited", "exit", "attrited", "attrition", "inactive", "closed", "terminated", "lapsed", "positive", "pos",
})
NEGATIVE = frozenset({
    "no", "n", "false", "f", "0", "retained", "retain", "active", "stayed", "stay", "existing", "current", "renewed",
    "kept", "remained", "loyal", "negative", "neg", "not churned", "no churn", "not churn",
})
#: Text read as "unknown" inside a numeric column (pandas already reads "NA", "null", "" as missing).
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "-", "?", "#n/a"})
_TIME = r"(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
_DATE = rf"\d{{4}}[-/.]\d{{1,2}}[-/.]\d{{1,2}}{_TIME}|\d{{1,2}}[-/.]\d{{1,2}}[-/.]\d{{2,4}}{_TIME}"
_THOUSANDS = r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?"
_ID_SUFFIXES = ("id", "key", "number", "index", "_no", "uuid", "guid")


class TableParams(BaseModel):
    """Small-table defaults: many shallow, slow, bagged trees with strong leaf regularisation (few
    rows overfit fast; no early stopping, so nothing is chosen on held-out rows), blended half and
    half with a spline logistic regression. Leaf minimums shrink on tiny tables (`_lgb_params`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_estimators: int = Field(600, gt=0)
    learning_rate: float = Field(0.01, gt=0)
    num_leaves: int = Field(8, gt=1)
    max_depth: int = Field(-1, description="-1: no limit")
    min_child_samples: int = Field(40, gt=0, description="capped at 10% of the training rows (at least 5) so tiny tables still split")
    subsample: float = Field(0.8, gt=0, le=1)
    colsample_bytree: float = Field(0.8, gt=0, le=1)
    reg_alpha: float = Field(0.0, ge=0)
    reg_lambda: float = Field(5.0, ge=0)
    min_data_per_group: int = Field(50, gt=0, description="rows per category group in a categorical split; capped like min_child_samples")
    cat_smooth: float = Field(10.0, ge=0)
    logistic_weight: float = Field(0.5, ge=0, le=1, description="weight of the logistic regression in the blended probability; 0 = LightGBM alone")
    logistic_c: float = Field(0.1, gt=0, description="inverse L2 strength of the blended logistic regression")
    spline_knots: int = Field(5, ge=0, description="knots of the spline terms of the blended logistic regression; 0 = straight lines")
    folds: int = Field(5, ge=2)
    seed: int = 0
    num_threads: int = Field(1, ge=0, description="LightGBM threads; 0 = all cores")


@dataclass
class PreparedTable:
    """The model matrix and everything needed to prepare new rows the same way.

    `columns` maps each feature to its category levels (text) or None (numeric), in X's order."""

    X: pd.DataFrame
    y: np.ndarray
    ids: pd.Series | None
    notes: list[str]
    positive_label: str
    label: str = ""
    id_column: str | None = None
    columns: dict[str, list[str] | None] = field(default_factory=dict)
    negative_label: str = ""


# -- column reading ----------------------------------------------------------------------------
def _text(series: pd.Series) -> pd.Series:
    """Values as stripped strings; blanks become missing."""
    text = series.astype("str").str.strip()
    return text.mask(text == "")


def _to_number(text: pd.Series) -> pd.Series:
    """Text to float: missing tokens and anything unparseable become NaN. A leading currency sign and
    thousands separators ("$1,234.50") are removed; a lone comma is never read as a decimal point."""
    text = text.str.replace(r"^([-+]?)\s*[$€£]\s*", r"\1", regex=True)
    thousands = text.str.fullmatch(_THOUSANDS, na=False)
    text = text.mask(thousands, text.str.replace(",", "", regex=False))
    return pd.to_numeric(text.mask(text.str.lower().isin(MISSING_TOKENS)), errors="coerce").astype("float64")


def _quote(values, limit: int = 5) -> str:
    values = list(values)
    shown = ", ".join(f"'{v}'" for v in values[:limit])
    return shown + (f" (and {len(values) - limit} more)" if len(values) > limit else "")


def _looks_like_id_name(name: str) -> bool:
    low = name.strip().lower()
    return low == "id" or low.endswith(_ID_SUFFIXES)


def _numeric_column(name: str, values: pd.Series, notes: list[str]) -> pd.Series | None:
    """A numeric feature, or None (dropped, with a note)."""
    known = values.dropna()
    if known.empty:
        notes.append(f"column {name}: no values: dropped")
        return None
    if known.nunique() == 1 and len(known) == len(values):  # one value or blank ("1"/"") is a flag: kept
        notes.append(f"column {name}: the same value ({known.iloc[0]:g}) in every row: dropped")
        return None
    whole = bool((known == np.round(known)).all())
    if whole and len(known) == len(values) and known.is_unique and (_looks_like_id_name(name) or known.is_monotonic_increasing):
        notes.append(f"column {name} looks like an identifier (a different whole number per row): dropped")
        return None
    return values


def _text_column(name: str, raw: pd.Series, notes: list[str]) -> tuple[str, pd.Series, list[str] | None] | None:
    """("numeric", values, None) or ("category", codes-ready text, levels), or None when dropped."""
    text = _text(raw)
    blanks = int((text.isna() & raw.notna()).sum())
    known = text.dropna()
    if known.empty:
        notes.append(f"column {name}: no values: dropped")
        return None
    number = _to_number(text)
    tokens = text.str.lower().isin(MISSING_TOKENS)
    failed = text.notna() & ~tokens & number.isna()
    if not failed.any():
        missing_words = sorted(text[tokens].unique().tolist())
        if blanks:
            notes.append(f"column {name}: {blanks} blank value{'s' if blanks != 1 else ''} read as missing")
        if missing_words:
            notes.append(f"column {name}: {int(tokens.sum())} value(s) {_quote(missing_words)} read as missing")
        plain = text[text.notna() & ~tokens].str.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
        if not plain.all():
            notes.append(f"column {name}: currency signs or thousands separators removed to read numbers")
        notes.append(f"column {name}: text read as numbers")
        values = _numeric_column(name, number, notes)
        return None if values is None else ("numeric", values, None)
    if known.str.fullmatch(_DATE).mean() >= DATE_SHARE:
        notes.append(f"column {name} looks like dates (e.g. '{known.iloc[0]}'): dropped; give ages or durations "
                     "as of the snapshot (e.g. days since signup) as numbers to use them")
        return None
    levels = int(known.nunique())
    if levels == 1 and len(known) == len(text):
        notes.append(f"column {name}: the same value ('{known.iloc[0]}') in every row: dropped")
        return None
    if levels == len(known) and len(known) >= MIN_ROWS:
        notes.append(f"column {name} looks like an identifier (unique per row): dropped")
        return None
    if levels > MAX_LEVELS or (len(known) >= MIN_ROWS and levels > MAX_UNIQUE_SHARE * len(known)):
        notes.append(f"column {name} looks like free text or an identifier ({levels} distinct values in {len(known)} "
                     f"rows; a category needs at most {MAX_LEVELS} levels and at most {MAX_UNIQUE_SHARE:.0%} distinct): dropped")
        return None
    if blanks:
        notes.append(f"column {name}: {blanks} blank value{'s' if blanks != 1 else ''} read as missing")
    return "category", text, sorted(known.unique().tolist())


def _label(frame: pd.DataFrame, label: str, notes: list[str]) -> tuple[np.ndarray, str, str]:
    """0/1 labels, the positive value and the negative value (as text)."""
    raw = frame[label]
    text = _text(raw)
    missing = int(text.isna().sum())
    if missing:
        raise InputError(f"label column '{label}': {missing} row(s) have no value (blank or empty); expected a value "
                         "on every row (drop or fill those rows first)")
    counts = text.value_counts()
    if len(counts) != 2:
        found = ", ".join(f"'{v}' ({n} rows)" for v, n in counts.head(10).items())
        more = f" and {len(counts) - 10} more" if len(counts) > 10 else ""
        raise InputError(f"label column '{label}': expected exactly two distinct values (e.g. Yes/No, 1/0), "
                         f"found {len(counts)}: {found}{more}")
    key = counts.index.to_series().str.lower().str.replace(r"[_\-]+", " ", regex=True).str.strip()
    key = key.mask(key.isin(["1.0", "0.0"]), key.str[0])
    side = key.map(lambda k: 1 if k in POSITIVE else 0 if k in NEGATIVE else None)
    first = key.str.split().str[0]
    side = side.fillna(first.map(lambda k: 1 if k in POSITIVE else 0 if k in NEGATIVE else None))
    if sorted(side.dropna().tolist()) == [0, 1]:
        positive, negative = side.index[side == 1][0], side.index[side == 0][0]
        notes.append(f"label {label}: '{positive}' = 1, '{negative}' = 0")
    else:
        positive, negative = sorted(sorted(counts.index, reverse=True), key=counts.get)  # rarer first; ties: later in sort order
        which = "the rarer value" if counts[positive] < counts[negative] else "as common as the other; the later in sort order"
        notes.append(f"label {label}: '{positive}' and '{negative}' are not a recognised yes/no pair; '{positive}' ({which}, "
                     f"{counts[positive]} of {len(text)} rows) is taken as 1, '{negative}' = 0")
    return (text == positive).to_numpy(dtype=int), str(positive), str(negative)


def prepare_table(frame: pd.DataFrame, label: str, id_column: str | None = None, *, folds: int = 5) -> PreparedTable:
    """Label, ids and a feature matrix from a raw snapshot table, with a note for every decision.

    Numeric columns stay numbers; text columns whose non-blank values all read as numbers become
    numbers (blanks -> NaN); other text becomes a pandas Categorical with its sorted levels fixed.
    Identifiers, free text, dates, constant and empty columns are dropped with a note. `folds` is
    only used to check there are enough rows of each class to cross-validate."""
    names = [str(c) for c in frame.columns]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise InputError(f"table: column names must be unique, found repeated {_quote(dup)}")
    frame = frame.set_axis(names, axis=1)
    if label not in frame.columns:
        raise InputError(f"label column '{label}' is not in the table; expected one of the table's columns: {_quote(names, 50)}")
    if id_column is not None and id_column not in frame.columns:
        raise InputError(f"--id column '{id_column}' is not in the table; expected one of the table's columns: {_quote(names, 50)}")
    if id_column == label:
        raise InputError(f"--id column '{id_column}' is the label column; expected a separate identifier column")
    if len(frame) < MIN_ROWS:
        raise InputError(f"table: {len(frame)} rows; expected at least {MIN_ROWS} rows to fit and cross-validate a model")

    notes: list[str] = []
    y, positive, negative = _label(frame, label, notes)
    minority = int(min(y.sum(), len(y) - y.sum()))
    if minority < folds:
        small = positive if y.sum() <= len(y) - y.sum() else negative
        raise InputError(f"label column '{label}': only {minority} row(s) are '{small}'; expected at least {folds} "
                         f"of each value (one per cross-validation fold)")

    ids = None
    if id_column is not None:
        ids = frame[id_column].rename(id_column)
        repeated = int(ids.duplicated().sum())
        notes.append(f"column {id_column}: identifier (--id), not a feature"
                     + (f"; {repeated} repeated value(s): check the table has one row per customer" if repeated else ""))

    columns: dict[str, list[str] | None] = {}
    features: dict[str, pd.Series] = {}
    for name in frame.columns.drop([c for c in (label, id_column) if c is not None]):
        raw = frame[name]
        if pd.api.types.is_datetime64_any_dtype(raw):
            notes.append(f"column {name} holds dates: dropped; give ages or durations as of the snapshot as numbers to use them")
            continue
        if pd.api.types.is_timedelta64_dtype(raw):
            notes.append(f"column {name}: durations read as days")
            raw = raw.dt.total_seconds() / 86400
        if pd.api.types.is_bool_dtype(raw) or pd.api.types.is_numeric_dtype(raw):
            values = _numeric_column(name, pd.Series(raw.to_numpy(dtype="float64", na_value=np.nan), index=raw.index), notes)
            if values is not None:
                features[name], columns[name] = values, None
            continue
        kept = _text_column(name, raw, notes)
        if kept is None:
            continue
        kind, values, levels = kept
        features[name], columns[name] = (values, None) if kind == "numeric" else (pd.Categorical(values, categories=levels), levels)
    if not features:
        raise InputError(f"table: no usable feature columns besides label '{label}'"
                         + (f" and id '{id_column}'" if id_column else "")
                         + "; expected at least one column of numbers or categories (see the notes: "
                         + "; ".join(notes[-5:]) + ")")
    X = pd.DataFrame(features, index=frame.index)
    dropped = [c for c in frame.columns if c not in columns and c not in (label, id_column)]
    n_cat = sum(levels is not None for levels in columns.values())
    notes.append(f"features: {len(columns)} used ({len(columns) - n_cat} numeric, {n_cat} categorical)"
                 + (f"; dropped: {', '.join(dropped)}" if dropped else ""))
    return PreparedTable(X=X, y=y, ids=ids, notes=notes, positive_label=positive, label=label, id_column=id_column,
                         columns=columns, negative_label=negative)


def apply_columns(frame: pd.DataFrame, columns: dict[str, list[str] | None]) -> pd.DataFrame:
    """New rows prepared like the training table: the same numeric reading (unparseable -> NaN) and
    the same category levels (unseen levels -> missing)."""
    frame = frame.set_axis([str(c) for c in frame.columns], axis=1)
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise InputError(f"table: missing feature column(s) {_quote(absent, 20)}; expected the columns the model was trained on")
    out = {}
    for name, levels in columns.items():
        raw = frame[name]
        if pd.api.types.is_timedelta64_dtype(raw):
            raw = raw.dt.total_seconds() / 86400
        if levels is None:
            numeric = pd.api.types.is_bool_dtype(raw) or pd.api.types.is_numeric_dtype(raw)
            out[name] = (pd.Series(raw.to_numpy(dtype="float64", na_value=np.nan), index=raw.index) if numeric
                         else _to_number(_text(raw)))
        else:
            text = _text(raw)
            out[name] = pd.Categorical(text.where(text.isin(levels)), categories=levels)
    return pd.DataFrame(out, index=frame.index)


# -- models --------------------------------------------------------------------------------------
def _matrix(X: pd.DataFrame) -> np.ndarray:
    """LightGBM input: numbers as they are, categories as their level codes (missing -> NaN)."""
    cols = [X[c].cat.codes.replace(-1, np.nan) if isinstance(X[c].dtype, pd.CategoricalDtype) else X[c] for c in X.columns]
    return np.column_stack([col.to_numpy(dtype="float64", na_value=np.nan) for col in cols])


def _categorical_positions(X: pd.DataFrame) -> list[int]:
    return [i for i, c in enumerate(X.columns) if isinstance(X[c].dtype, pd.CategoricalDtype)]


def _lgb_params(params: TableParams, n_rows: int) -> dict:
    """LightGBM parameters; the per-leaf and per-group minimums are capped at 10% of the rows so a
    table of a hundred rows can still grow trees."""
    cap = max(5, n_rows // 10)
    return {
        "objective": "binary", "learning_rate": params.learning_rate, "num_leaves": params.num_leaves,
        "max_depth": params.max_depth, "min_data_in_leaf": min(params.min_child_samples, cap),
        "bagging_fraction": params.subsample, "bagging_freq": 1 if params.subsample < 1 else 0,
        "feature_fraction": params.colsample_bytree, "lambda_l1": params.reg_alpha, "lambda_l2": params.reg_lambda,
        "min_data_per_group": min(params.min_data_per_group, cap), "cat_smooth": params.cat_smooth,
        "seed": params.seed, "num_threads": params.num_threads, "deterministic": True, "force_col_wise": True,
        "verbosity": -1,
    }


def _fit_lightgbm(X: pd.DataFrame, y: np.ndarray, params: TableParams):
    import lightgbm as lgb

    data = lgb.Dataset(_matrix(X), label=y, feature_name=[f"f{i}" for i in range(X.shape[1])],
                       categorical_feature=_categorical_positions(X), free_raw_data=True)
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
    parts = [("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()), nums),
             ("cat", OneHotEncoder(handle_unknown="ignore"), cats)]
    smooth = [col for col in nums if X[col].nunique() > 10] if knots else []
    if smooth:
        parts.append(("spline", make_pipeline(SimpleImputer(strategy="median"), SplineTransformer(n_knots=knots, knots="quantile"),
                                              StandardScaler()), smooth))
    return make_pipeline(ColumnTransformer(parts), LogisticRegression(C=c, max_iter=5000)).fit(_logistic_input(X), y)


def _fit_partner(X: pd.DataFrame, y: np.ndarray, params: TableParams):
    """The blend's second model: spline logistic regression (see `_fit_logistic`)."""
    return _fit_logistic(X, y, params.logistic_c, params.spline_knots)


def _blend(p_lgb: np.ndarray, p_partner: np.ndarray | None, weight: float) -> np.ndarray:
    return p_lgb if p_partner is None or weight == 0 else (1 - weight) * p_lgb + weight * p_partner


def model_description(params: TableParams) -> str:
    """One line for notes, JSON and MLflow: what the reported probability is."""
    w = params.logistic_weight
    spline = f"logistic regression (C={params.logistic_c:g})"
    if params.spline_knots:
        spline = f"spline {spline[:-1]}, {params.spline_knots} knots)"
    if w == 0:
        return "LightGBM"
    if w == 1:
        return spline
    return f"mean of probabilities: {1 - w:g} x LightGBM + {w:g} x {spline}"


@dataclass
class TableModel:
    """The final model, fitted on every row: LightGBM blended with the spline logistic regression
    exactly as in cross-validation (`params.logistic_weight` of the probability from the logistic
    model, the rest from LightGBM)."""

    booster: object
    partner: object | None
    columns: dict[str, list[str] | None]
    params: TableParams
    positive_label: str
    label: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def features(self) -> list[str]:
        return list(self.columns)

    def predict_prepared(self, X: pd.DataFrame) -> np.ndarray:
        """Probabilities for a matrix already prepared like `PreparedTable.X`."""
        partner = self.partner.predict_proba(_logistic_input(X))[:, 1] if self.partner is not None else None
        return np.asarray(_blend(self.booster.predict(_matrix(X)), partner, self.params.logistic_weight), dtype=float)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """P(label == positive_label) for raw rows with the original columns (extra columns are ignored)."""
        return self.predict_prepared(apply_columns(frame, self.columns))

    def feature_importance(self) -> pd.DataFrame:
        """LightGBM total gain per feature (as a share of all gain) and split count, largest first."""
        gain = self.booster.feature_importance(importance_type="gain")
        split = self.booster.feature_importance(importance_type="split")
        out = pd.DataFrame({"feature": self.features, "gain": gain / max(float(gain.sum()), 1e-12), "splits": split.astype(int)})
        return out.sort_values(["gain", "splits"], ascending=False, ignore_index=True)


def fit_table_model(prepared: PreparedTable, params: TableParams | None = None) -> TableModel:
    """The final model on every row, for scoring new rows of the same table layout."""
    params = params or TableParams()
    X, y = prepared.X, prepared.y
    partner = _fit_partner(X, y, params) if params.logistic_weight > 0 else None
    return TableModel(_fit_lightgbm(X, y, params), partner, prepared.columns, params, prepared.positive_label,
                      prepared.label, [*prepared.notes, f"model: {model_description(params)}"])


def _scores(y: np.ndarray, p: np.ndarray) -> dict:
    from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

    return {"roc_auc": float(roc_auc_score(y, p)), "pr_auc": float(average_precision_score(y, p)),
            "brier": float(np.mean((p - y) ** 2)), "log_loss": float(log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1]))}


def cross_validate_table(prepared: PreparedTable, params: TableParams | None = None,
                         progress: Callable[[str], None] | None = None) -> dict:
    """Stratified k-fold figures of the model (`roc_auc_mean` ...), of its two parts alone and of the
    plain logistic baseline, all on the same folds. Every model of a fold is fitted on that fold's
    training rows only; nothing (trees, weights, knots, levels to one-hot) is chosen on its test rows."""
    from sklearn.model_selection import StratifiedKFold

    params = params or TableParams()
    X, y = prepared.X, prepared.y
    minority = int(min(y.sum(), len(y) - y.sum()))
    if minority < params.folds:
        raise InputError(f"label column '{prepared.label}': only {minority} row(s) of the rarer value; expected at least "
                         f"{params.folds}, one per fold (folds = {params.folds})")
    split = StratifiedKFold(n_splits=params.folds, shuffle=True, random_state=params.seed)
    per_fold = []
    for k, (train, test) in enumerate(split.split(np.zeros(len(y)), y), start=1):
        X_train, y_train, X_test, y_test = X.iloc[train], y[train], X.iloc[test], y[test]
        p_lgb = _fit_lightgbm(X_train, y_train, params).predict(_matrix(X_test))
        p_partner = _fit_partner(X_train, y_train, params).predict_proba(_logistic_input(X_test))[:, 1]
        p_base = _fit_logistic(X_train, y_train).predict_proba(_logistic_input(X_test))[:, 1]
        scores = _scores(y_test, _blend(p_lgb, p_partner, params.logistic_weight))
        per_fold.append({"fold": k, "rows": len(test), "positives": int(y_test.sum()), **scores,
                         "lightgbm_roc_auc": _scores(y_test, p_lgb)["roc_auc"],
                         "spline_logistic_roc_auc": _scores(y_test, p_partner)["roc_auc"],
                         "baseline_logistic_roc_auc": _scores(y_test, p_base)["roc_auc"]})
        if progress:
            progress(f"fold {k}/{params.folds}: {len(train):,} training rows, {len(test):,} test rows, ROC-AUC {scores['roc_auc']:.4f}")

    folds = pd.DataFrame(per_fold)

    def r(value: float) -> float:
        return round(float(value), 4)

    def mean_std(column: str, name: str) -> dict:
        return {f"{name}_mean": r(folds[column].mean()), f"{name}_std": r(folds[column].std(ddof=0))}

    description = model_description(params)
    return {
        "folds": params.folds, "rows": len(y), "positives": int(y.sum()), "base_rate": r(y.mean()),
        "label": prepared.label, "positive_label": prepared.positive_label, "features": list(X.columns),
        "model": description,
        **mean_std("roc_auc", "roc_auc"), "pr_auc_mean": r(folds["pr_auc"].mean()),
        "brier_mean": r(folds["brier"].mean()), "log_loss_mean": r(folds["log_loss"].mean()),
        **mean_std("lightgbm_roc_auc", "lightgbm_roc_auc"), **mean_std("spline_logistic_roc_auc", "spline_logistic_roc_auc"),
        **mean_std("baseline_logistic_roc_auc", "baseline_logistic_roc_auc"),
        "per_fold": [{key: (r(v) if isinstance(v, float) else v) for key, v in row.items()} for row in per_fold],
        "params": params.model_dump(),
        "notes": [*prepared.notes, f"model: {description}",
                  "baseline: plain logistic regression (median imputation with missing indicators, scaling, one-hot), same folds"],
    }
