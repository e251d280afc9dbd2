"""MLflow: runs, the `churn-risk` registered model and its aliases. The only module of models/
that imports mlflow.

- A training run logs parameters, backtest metrics (one per model, horizon and metric), the
  backtest table, calibration and SHAP figures, the feature dictionary, data fingerprints and
  the model: a pyfunc that returns the whole curve (p_30d .. p_180d) with signature and input
  example. The model is saved as LightGBM text + JSON (models/curve.py), never pickled.
- Each registered version gets the alias `challenger`; `champion` moves only through `promote`
  and `rollback`, and each move is recorded in the versions' tags (the alias history).
- Where the logistic baseline's backtest beats the curve's, the run also logs the baseline as a
  servable model (models/linear.py) under `baseline`, unregistered; `churn promote --model baseline`
  registers it (`register_baseline`: a version tagged `model.kind=logistic`) and judges it.
- With a `sqlite:///path/mlflow.db` tracking URI, artifacts go to `path/mlartifacts/` (next to the
  database, not the working directory).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from core.vocabulary import CURVE_COLUMNS
from models.curve import RiskCurveModel
from models.linear import LinearCurveModel
from models.plots import pyplot
from models.promotion import CHAMPION_PREVIOUS, CHAMPION_SINCE

MODEL_NAME = "churn-risk"
EXPERIMENT = "churn-risk"
CHALLENGER, CHAMPION = "challenger", "champion"
#: run tag: the logged logistic baseline of a training run (absent when the curve won everywhere)
BASELINE_URI = "baseline.model_uri"
#: model-version tags of a registered baseline: its kind, and the curve version whose run logged it
KIND, SOURCE_VERSION = "model.kind", "model.source_version"


def point_at(tracking_uri: str) -> None:
    """Point MLflow at the tracking URI (registry on the same URI), writing nothing there."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)


def connect(tracking_uri: str, experiment: str = EXPERIMENT):
    """Point MLflow at the tracking URI (registry on the same URI); create the experiment if new."""
    point_at(tracking_uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        location = None
        if tracking_uri.startswith("sqlite:///"):
            location = (Path(tracking_uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()
        mlflow.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment)
    return mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


class RiskCurvePyfunc(PythonModel):
    """mlflow.pyfunc wrapper: a frame of feature columns in, the calibrated curve out."""

    model: RiskCurveModel | LinearCurveModel

    def load_context(self, context) -> None:
        self.model = RiskCurveModel.load(Path(context.artifacts["curve"]))

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        curve = self.model.predict_curve(pd.DataFrame(model_input))
        return pd.DataFrame(curve, columns=list(CURVE_COLUMNS), index=getattr(model_input, "index", None))


class LinearCurvePyfunc(RiskCurvePyfunc):
    """mlflow.pyfunc wrapper of the servable logistic baseline (models/linear.py): the same in and out."""

    def load_context(self, context) -> None:
        self.model = LinearCurveModel.load(Path(context.artifacts["linear"]))


def _log_run_contents(
    tmp: Path, tags: dict, params: dict, metrics: dict, tables: dict[str, pd.DataFrame], documents: dict
) -> None:
    """Tags, parameters (dicts and lists as JSON), finite metrics, tables (as MLflow tables and CSV)
    and JSON documents into the active run."""
    mlflow.set_tags(tags)
    mlflow.log_params({k: (json.dumps(v) if isinstance(v, dict | list) else v) for k, v in params.items()})
    mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)})
    for name, table in tables.items():
        mlflow.log_table(table, f"{name}.json")
        path = tmp / f"{name}.csv"
        table.to_csv(path, index=False)
        mlflow.log_artifact(str(path))
    for name, document in documents.items():
        mlflow.log_dict(document, f"{name}.json")


def signature_frame(
    panel: pd.DataFrame, features: list[str], categories: dict[str, list[str]], rows: int = 5
) -> pd.DataFrame:
    """Input example: the panel's most complete rows, numbers as float64 and categories as str."""
    frame = panel[features]
    pick = frame.notna().sum(axis=1).sort_values(ascending=False, kind="stable").index[:rows]
    example = frame.loc[pick].reset_index(drop=True)
    return pd.DataFrame(
        {
            c: example[c].astype("object").where(example[c].notna(), None).astype(str)
            if c in categories
            else example[c].astype("float64")
            for c in features
        }
    )


def log_training(
    model: RiskCurveModel,
    *,
    panel: pd.DataFrame,
    params: dict,
    metrics: dict[str, float],
    tables: dict[str, pd.DataFrame],
    documents: dict[str, object],
    figures: dict[str, object],
    tags: dict[str, str],
    register: bool = True,
    baseline: LinearCurveModel | None = None,
) -> dict:
    """One run with everything about a trained curve; returns run id, model URI, version, alias.
    With `baseline`, the servable logistic baseline is logged in the same run too (under
    `baseline`, not registered; its URI in the run tag BASELINE_URI and in `baseline_model_uri`)."""
    client = mlflow.MlflowClient()
    with mlflow.start_run() as run, tempfile.TemporaryDirectory() as tmp:
        _log_run_contents(Path(tmp), tags, params, metrics, tables, documents)
        for name, figure in figures.items():
            mlflow.log_figure(figure, f"{name}.png")
            pyplot().close(figure)  # pyplot keeps a figure until it is closed
        info = _log_model(model, panel, Path(tmp), "model", MODEL_NAME if register else None)
        baseline_uri = None
        if baseline is not None:
            baseline_uri = _log_model(baseline, panel, Path(tmp), "baseline", None).model_uri
            mlflow.set_tag(BASELINE_URI, baseline_uri)
    out = {
        "run_id": run.info.run_id,
        "model_uri": info.model_uri,
        "version": None,
        "alias": None,
        "baseline_model_uri": baseline_uri,
    }
    if register:
        version = str(info.registered_model_version)
        client.set_registered_model_alias(MODEL_NAME, CHALLENGER, version)
        out.update(version=version, alias=CHALLENGER, model_uri=f"models:/{MODEL_NAME}/{version}")
    return out


def _log_model(model: RiskCurveModel | LinearCurveModel, panel: pd.DataFrame, tmp: Path, name: str, registered):
    """The model as a pyfunc from code (imported, not unpickled) with signature and input example."""
    from mlflow.models import infer_signature

    example = signature_frame(panel, model.features, model.categories)
    signature = infer_signature(example, pd.DataFrame(model.predict_curve(example), columns=list(CURVE_COLUMNS)))
    linear = isinstance(model, LinearCurveModel)
    folder = tmp / name / ("linear" if linear else "curve")
    model.save(folder)
    entry = tmp / name / ("linear_curve_model.py" if linear else "risk_curve_model.py")
    entry.write_text(_ENTRY.format(pyfunc="LinearCurvePyfunc" if linear else "RiskCurvePyfunc"))
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=str(entry),
        artifacts={"linear" if linear else "curve": str(folder)},
        signature=signature,
        input_example=example,
        registered_model_name=registered,
        pip_requirements=_requirements(),
    )


_ENTRY = """import mlflow

from models.registry import {pyfunc}

mlflow.models.set_model({pyfunc}())
"""


class TablePyfunc(PythonModel):
    """mlflow.pyfunc wrapper of a `churn train-table` model: raw rows in, P(positive label) out."""

    def load_context(self, context) -> None:
        import joblib

        self.model = joblib.load(context.artifacts["table_model"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        frame = pd.DataFrame(model_input)
        return pd.DataFrame({"probability": self.model.predict_proba(frame)}, index=frame.index)


_TABLE_ENTRY = """import mlflow

from models.registry import TablePyfunc

mlflow.models.set_model(TablePyfunc())
"""


def log_table_run(
    model,
    *,
    example: pd.DataFrame,
    params: dict,
    metrics: dict[str, float],
    tables: dict[str, pd.DataFrame],
    documents: dict[str, object],
    tags: dict[str, str],
) -> dict:
    """One run of `churn train-table` (its own experiment; not registered as churn-risk, whose input is the snapshot panel).
    The sklearn part of the blend has no portable text format, so the model is stored with joblib."""
    import joblib

    with mlflow.start_run() as run, tempfile.TemporaryDirectory() as tmp:
        _log_run_contents(Path(tmp), tags, params, metrics, tables, documents)
        path = Path(tmp) / "table_model.joblib"
        joblib.dump(model, path)
        entry = Path(tmp) / "table_model.py"
        entry.write_text(_TABLE_ENTRY)
        from mlflow.models import infer_signature

        signature = infer_signature(example, pd.DataFrame({"probability": model.predict_proba(example)}))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(entry),
            artifacts={"table_model": str(path)},
            signature=signature,
            input_example=example,
            pip_requirements=_requirements(),
        )
    return {"run_id": run.info.run_id, "model_uri": info.model_uri}


def _requirements() -> list[str]:
    """Pinned runtime requirements of the pyfunc (skips MLflow's slow requirement inference).
    Loading also needs this project installed (the pyfunc class lives in models/registry.py)."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("mlflow", "lightgbm", "numpy", "pandas", "scikit-learn")]


def version_info(alias: str) -> dict | None:
    """The version behind an alias with its run's metrics, tags and params; None if the alias is unset."""
    client = mlflow.MlflowClient()
    try:
        mv = client.get_model_version_by_alias(MODEL_NAME, alias)
    except mlflow.exceptions.MlflowException:
        return None
    return _version_dict(client, mv)


def _version_dict(client, mv) -> dict:
    run = client.get_run(mv.run_id)
    return {
        "version": str(mv.version),
        "run_id": mv.run_id,
        "metrics": dict(run.data.metrics),
        "tags": dict(run.data.tags),
        "params": dict(run.data.params),
        "version_tags": dict(mv.tags),
    }


def describe(model_uri: str) -> dict | None:
    """`version_info` for a models:/churn-risk@alias or models:/churn-risk/<version> URI; None for
    other URIs (a run or a path) and unset aliases."""
    prefix = f"models:/{MODEL_NAME}"
    if model_uri.startswith(prefix + "@"):
        return version_info(model_uri.removeprefix(prefix + "@"))
    if model_uri.startswith(prefix + "/"):
        client = mlflow.MlflowClient()
        try:
            mv = client.get_model_version(MODEL_NAME, model_uri.removeprefix(prefix + "/"))
        except mlflow.exceptions.MlflowException:
            return None
        return _version_dict(client, mv)
    return None


def alias_version(alias: str = CHAMPION) -> str | None:
    """The version an alias points at (one registry query, no run lookup); None when it is unset.
    What the API polls to notice a new champion."""
    try:
        return str(mlflow.MlflowClient().get_model_version_by_alias(MODEL_NAME, alias).version)
    except mlflow.exceptions.MlflowException:
        return None


def alias_of(model_uri: str) -> str | None:
    """The alias a models:/churn-risk@alias URI follows; None for a fixed version, a run or a path
    (which never move)."""
    prefix = f"models:/{MODEL_NAME}@"
    return model_uri.removeprefix(prefix) if model_uri.startswith(prefix) else None


def version_uri(version: str) -> str:
    return f"models:/{MODEL_NAME}/{version}"


def _tag(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def move_champion(version: str, *, decision: dict) -> None:
    """Point `champion` at `version` and record the decision on the version (forced or not), with
    the alias history `churn rollback` follows: the champion it replaced (`champion.previous`) and
    since when it is the champion (`champion.since`). The tags are written before the alias moves,
    so a champion always carries its history."""
    client = mlflow.MlflowClient()
    previous = alias_version(CHAMPION)
    tags = {f"promotion.{key}": _tag(value) for key, value in decision.items()}
    tags[CHAMPION_SINCE] = pd.Timestamp.now(tz="UTC").isoformat()
    if previous is not None and previous != str(version):
        tags[CHAMPION_PREVIOUS] = previous
    for key, value in tags.items():
        client.set_model_version_tag(MODEL_NAME, version, key, value)
    client.set_registered_model_alias(MODEL_NAME, CHAMPION, version)


def rollback_champion(reason: str, by: str) -> dict:
    """Move `champion` back to the version it replaced (models/promotion.rollback_target), recording
    on both versions who rolled back, when and why. A ChurnError when there is no champion or
    nothing earlier to go back to."""
    from core.errors import ChurnError
    from models.promotion import rollback_target

    client = mlflow.MlflowClient()
    current = alias_version(CHAMPION)
    if current is None:
        raise ChurnError(
            f"no model version has the alias '{CHAMPION}' in {mlflow.get_tracking_uri()}: nothing to roll back"
        )
    versions = {str(mv.version): dict(mv.tags) for mv in client.search_model_versions(f"name='{MODEL_NAME}'")}
    target, basis = rollback_target(current, versions)
    if target is None:
        raise ChurnError(
            f"the champion is version {current} and no earlier version of {MODEL_NAME} exists to roll back to"
        )
    at = pd.Timestamp.now(tz="UTC").isoformat()
    record = {"at": at, "by": by, "reason": reason}
    for key, value in {**record, "to": target}.items():
        client.set_model_version_tag(MODEL_NAME, current, f"rollback.{key}", value)
    # the target keeps its own champion.previous: a second rollback goes on down the history
    for key, value in {**record, "from": current}.items():
        client.set_model_version_tag(MODEL_NAME, target, f"restored.{key}", value)
    client.set_model_version_tag(MODEL_NAME, target, CHAMPION_SINCE, at)
    client.set_registered_model_alias(MODEL_NAME, CHAMPION, target)
    return {"champion": target, "champion_before": current, "basis": basis, **record}


def record_refusal(version: str, decision: dict) -> None:
    client = mlflow.MlflowClient()
    client.set_model_version_tag(MODEL_NAME, version, "promotion.refused", json.dumps(decision.get("reasons", [])))


def load_curve(model_uri: str, *, check_requirements: bool = True) -> RiskCurveModel | LinearCurveModel:
    """The model behind a model URI (models:/churn-risk@champion, runs:/..., a local path): the
    LightGBM curve, or the logistic baseline where that was promoted (the same interface).
    `check_requirements`: MLflow warns when the packages the model was logged with differ from
    those installed, by scanning every installed distribution (about 3 s on a 2-core machine); the
    API's workers skip it, as `churn serve` made that check on the same URI before starting them."""
    return mlflow.pyfunc.load_model(model_uri, suppress_warnings=not check_requirements).unwrap_python_model().model


def model_kind(info: dict | None) -> str:
    """What a registered version (`version_info`) is: 'lightgbm' (the curve) or 'logistic' (the
    baseline), whose backtest metrics are backtest.<kind>.*; older versions are all curves."""
    return (info or {}).get("version_tags", {}).get(KIND, RiskCurveModel.kind)


def register_baseline(challenger: dict) -> str:
    """The version of `churn-risk` holding the logistic baseline that the challenger's run logged,
    registered now (tagged model.kind=logistic and model.source_version) unless an earlier
    `churn promote --model baseline` registered it already. InputError when the run logged none."""
    from core.errors import InputError

    uri = challenger["tags"].get(BASELINE_URI)
    if not uri:
        raise InputError(
            f"--model baseline: the challenger (version {challenger['version']}) was trained without a servable logistic baseline: "
            "`churn train` logs one only where the baseline's backtest beats the curve's (its `baseline_better`); "
            "promote the curve with `churn promote`"
        )
    client = mlflow.MlflowClient()
    for mv in client.search_model_versions(f"name='{MODEL_NAME}'"):
        tags = dict(mv.tags)
        if tags.get(KIND) == LinearCurveModel.kind and tags.get(SOURCE_VERSION) == challenger["version"]:
            return str(mv.version)
    version = mlflow.register_model(
        uri, MODEL_NAME, tags={KIND: LinearCurveModel.kind, SOURCE_VERSION: challenger["version"]}
    )
    return str(version.version)


def run_artifact(run_id: str, path: str) -> Path | None:
    """A logged artifact of a run as a local file, or None when the run has no such artifact."""
    try:
        return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path))
    except (mlflow.exceptions.MlflowException, OSError):
        return None


def log_report(run_id: str, path: Path) -> None:
    """Attach a report to the model's run (under report/)."""
    mlflow.MlflowClient().log_artifact(run_id, str(path), artifact_path="report")
