"""The configuration model (core/config): the shipped YAML is the models' defaults, a config folder
replaces files one by one, bad files are errors naming the file and the key, and an installed
package with no config folder at all runs on the shipped defaults."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from core.config import FILES, PACKAGED_DIR, REDACTED, SETTINGS_FILE, Config, config_file, load_config, load_section
from core.config.features import FeatureParams, OutcomeParams, SignalParams
from core.config.model import CurveParams, ModelConfig
from core.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
#: keys the shipped files show only as a comment (an example), their default being "unset"
COMMENTED = {"escalation.monitoring.destinations"}


def _missing_keys(prefix: str, model: type[BaseModel], raw: dict) -> list[str]:
    """Fields of `model` (sections followed down) that the YAML mapping `raw` does not spell out."""
    missing = []
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}"
        if name not in raw:
            missing += [] if key in COMMENTED else [key]
        elif isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            missing += _missing_keys(key, field.annotation, raw[name] or {})
    return missing


def test_the_shipped_files_are_the_models_defaults_and_spell_out_every_key():
    assert load_config(None) == Config()  # no config folder: the shipped files, equal to the defaults
    for section, (name, model) in FILES.items():
        raw = yaml.safe_load((PACKAGED_DIR / name).read_text())
        assert model.model_validate(raw) == getattr(Config(), section), name
        assert _missing_keys(section, model, raw) == [], name
    # settings.yaml: what it sets is the settings' own default
    from core.settings import Settings

    for key, value in yaml.safe_load((PACKAGED_DIR / SETTINGS_FILE).read_text()).items():
        assert str(Settings.model_fields[key].default) == str(value), key


def test_the_tunables_once_scattered_are_keys_of_the_model():
    config = Config()
    assert config.model.backtest.folds == config.model.folds == 4 and config.model.budget == 0.05
    assert config.model.dask_min_snapshots == 1_000_000
    assert config.model.curve.formulation == "hazard" and config.model.curve.monotone["nps_last"] == -1
    assert config.features.signals == SignalParams() and config.features.outcomes == OutcomeParams()
    # the classes the layers import are the configuration's own
    from features.context import FeatureParams as used_by_features
    from features.text.signals import SignalParams as used_by_signals
    from models.curve import CurveParams as used_by_curve
    from models.outcomes import OutcomeParams as used_by_outcomes

    assert (used_by_features, used_by_signals, used_by_curve, used_by_outcomes) == (
        FeatureParams,
        SignalParams,
        CurveParams,
        OutcomeParams,
    )


def test_a_file_in_the_config_folder_replaces_the_shipped_one_only(tmp_path):
    (tmp_path / "model.yaml").write_text(
        "curve: {formulation: per_horizon, monotone: {nps_last: 0}}\nbacktest: {folds: 2}\ndask: {min_snapshots: 10}\n"
    )
    (tmp_path / "features.yaml").write_text("signals: {rephrase_similarity: 0.9}\noutcomes: {min_answers: 40}\n")
    config = load_config(tmp_path)
    assert config.model.curve.formulation == "per_horizon" and config.model.curve.monotone == {"nps_last": 0}
    assert config.model.folds == 2 and config.model.budget == 0.05  # a key left out: its default
    assert config.model.dask_min_snapshots == 10 and config.model.promotion == ModelConfig().promotion
    assert config.features.signals.rephrase_similarity == 0.9 and config.features.outcomes.min_answers == 40
    assert config.features.account_block == 5000
    assert config.escalation == Config().escalation  # no escalation.yaml here: the shipped one
    assert config_file(tmp_path, "escalation.yaml") == PACKAGED_DIR / "escalation.yaml"
    assert config_file(tmp_path, "model.yaml") == tmp_path / "model.yaml"
    assert config.fingerprint != Config().fingerprint


@pytest.mark.parametrize(
    ("file", "text", "expected"),
    [
        ("model.yaml", "backtest: {fold: 3}\n", r"key 'backtest\.fold': Extra inputs are not permitted"),
        ("model.yaml", "backtest: {budget: 2}\n", r"key 'backtest\.budget': Input should be less than 1 \(got 2\)"),
        ("model.yaml", "curve: {formulation: survival}\n", r"key 'curve\.formulation': Input should be 'hazard' or"),
        (
            "model.yaml",
            "curve: {monotone: {nps_last: 2}}\n",
            r"key 'curve\.monotone': .*nps_last: expected a direction",
        ),
        ("model.yaml", "dask: {min_snapshots: -1}\n", r"key 'dask\.min_snapshots'"),
        ("features.yaml", "signals: {lookback: 0}\n", r"key 'signals\.lookback': Input should be greater than 0"),
        ("features.yaml", "outcomes: {min_answer: 5}\n", r"key 'outcomes\.min_answer': Extra inputs"),
        ("escalation.yaml", "windows: {critcal: 5}\n", r"key 'windows\.critcal': Extra inputs"),
        ("features.yaml", "- a list\n", r"expected a mapping of keys at the top level"),
        ("model.yaml", "curve: [\n", r"not valid YAML"),
    ],
)
def test_a_bad_file_is_an_error_naming_the_file_and_the_key(tmp_path, file, text, expected):
    (tmp_path / file).write_text(text)
    with pytest.raises(InputError, match=expected) as err:
        load_config(tmp_path)
    assert str(err.value).startswith(str(tmp_path / file))


def test_every_bad_file_is_reported_at_once(tmp_path):
    (tmp_path / "model.yaml").write_text("backtest: {folds: 0}\n")
    (tmp_path / "escalation.yaml").write_text("cooldown_hours: -1\n")
    with pytest.raises(InputError) as err:
        load_config(tmp_path)
    assert "escalation.yaml: key 'cooldown_hours'" in str(err.value)
    assert "model.yaml: key 'backtest.folds'" in str(err.value)
    # one file's loader sees its own file only
    assert load_section(tmp_path, "features") == FeatureParams()


def test_flat_keys_follow_the_files_and_leave_destination_urls_out(tmp_path):
    (tmp_path / "escalation.yaml").write_text(
        "alerts: {destinations: {cs: {kind: slack, url: 'https://hooks.slack.com/services/T/B/secret'}}, default: [cs]}\n"
    )
    flat = load_config(tmp_path).flat()
    assert flat["model.backtest.folds"] == 4 and flat["features.signals.lookback"] == 8
    assert flat["escalation.windows.critical"] == 30 and flat["model.curve.formulation"] == "hazard"
    assert json.loads(flat["model.curve.monotone"])["nps_last"] == -1
    assert json.loads(flat["escalation.risk_thresholds"]) == {"30": 0.2, "60": 0.3, "90": 0.4, "180": 0.6}
    assert json.loads(flat["escalation.alerts.destinations"]) == {"cs": {"kind": "slack", "url": REDACTED}}
    assert "secret" not in json.dumps(flat)
    assert all(isinstance(v, str | int | float | bool | type(None)) for v in flat.values())


def test_an_installed_package_without_a_config_folder_runs_on_the_shipped_defaults(tmp_path):
    """A wheel installs core/ (with its YAML, package-data) into site-packages; the command runs in
    a folder with no config/ and no CHURN_CONFIG_DIR."""
    site = tmp_path / "site-packages"
    shutil.copytree(ROOT / "core", site / "core", ignore=shutil.ignore_patterns("__pycache__"))
    work = tmp_path / "work"
    work.mkdir()
    probe = (
        "import json; from core.settings import load_settings; from core.config import PACKAGED_DIR, load_config, Config\n"
        "s = load_settings(); c = load_config(s.config_dir)\n"
        "print(json.dumps({'dir': str(PACKAGED_DIR), 'config_dir': str(s.config_dir), 'data_dir': str(s.data_dir),"
        " 'default': c == Config(), 'folds': c.model.folds, 'version': c.escalation.version}))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHURN_")} | {"PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-c", probe], cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["dir"] == str(site / "core" / "config") and not (work / got["config_dir"]).exists()
    assert got["default"] and got["folds"] == 4 and got["data_dir"] == "data"
    assert got["version"] == Config().escalation.version


def test_the_settings_file_comes_from_the_config_folder_else_the_shipped_one(tmp_path, monkeypatch):
    from core.settings import load_settings

    monkeypatch.delenv("CHURN_SETTINGS_FILE", raising=False)
    monkeypatch.setenv("CHURN_CONFIG_DIR", str(tmp_path))
    assert load_settings().seed == 42  # no settings.yaml there: the shipped one
    (tmp_path / "settings.yaml").write_text("seed: 7\n")
    assert load_settings().seed == 7
    (tmp_path / "settings.yaml").write_text("sede: 7\n")
    with pytest.raises(InputError, match=rf"{tmp_path / 'settings.yaml'}.*setting 'sede'"):
        load_settings()
    (tmp_path / "settings.yaml").write_text("seed: [\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_settings()
