"""The platform's configuration: one validated model for its YAML files.

=================  ========================================================  =====================
file               what                                                      model
=================  ========================================================  =====================
escalation.yaml    the escalation policy, alerts, holdout, monitors          `EscalationPolicy`
features.yaml      feature definitions, `signals:`, `outcomes:`              `FeatureParams`
model.yaml         `curve:`, `backtest:`, `promotion:`, `dask:`              `ModelConfig`
settings.yaml      operator settings (CHURN_* environment variables win)     `core.settings.Settings`
=================  ========================================================  =====================

The first three make one `Config`. Every default is defined once, in the models; the files shipped
inside the package next to this module (core/config/*.yaml) spell the defaults out with their
reasons, and a test keeps them equal. A file of the same name in the config folder (the setting
`config_dir`, CHURN_CONFIG_DIR) replaces the shipped one; the keys it leaves out take their defaults.
An unknown key or a bad value is an InputError naming the file, the key and what was expected.

Entry points build the `Config` once (`load_config`) and pass its parts down; `flat()` is what
training logs to MLflow with every model.
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from core.config.base import Strict, read_yaml
from core.config.escalation import EscalationPolicy
from core.config.features import FeatureParams
from core.config.model import ModelConfig
from core.errors import InputError, describe_validation

#: The shipped defaults: the YAML files next to this module, installed with the package.
PACKAGED_DIR = Path(__file__).resolve().parent
#: Section of `Config` -> its file and model.
FILES: dict[str, tuple[str, type[Strict]]] = {
    "escalation": ("escalation.yaml", EscalationPolicy),
    "features": ("features.yaml", FeatureParams),
    "model": ("model.yaml", ModelConfig),
}
SETTINGS_FILE = "settings.yaml"
#: Values `flat()` leaves out of MLflow: a Slack or webhook URL carries its own credential.
REDACTED = "(not logged)"

Scalar = str | int | float | bool | None


class Config(Strict):
    """Every tunable of the platform: escalation.yaml, features.yaml and model.yaml, validated."""

    escalation: EscalationPolicy = Field(default_factory=EscalationPolicy)
    features: FeatureParams = Field(default_factory=FeatureParams)
    model: ModelConfig = Field(default_factory=ModelConfig)

    def flat(self) -> dict[str, Scalar]:
        """Every key as `<section>.<key>...` -> a value: the sections of a file are followed down,
        and a value that is a list or a mapping of the user's own keys (thresholds by horizon,
        monotone directions, routes) is one JSON string. Destination URLs are left out."""
        out: dict[str, Scalar] = {}

        def walk(prefix: str, model: BaseModel) -> None:
            for name in type(model).model_fields:
                value = getattr(model, name)
                key = f"{prefix}.{name}"
                if isinstance(value, BaseModel):
                    walk(key, value)
                    continue
                if key == "escalation.alerts.destinations":
                    value = {n: {**spec, "url": REDACTED} for n, spec in value.items()}
                plain = _jsonable(value)
                out[key] = json.dumps(plain, sort_keys=True) if isinstance(plain, dict | list) else plain

        for section in FILES:
            walk(section, getattr(self, section))
        return out

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the whole configuration: the same values always give the same fingerprint,
        whichever files they came from."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Path):
        return str(value)
    return value


def config_file(config_dir: Path | str | None, name: str) -> Path:
    """`name` in `config_dir` when it is there, else the shipped one."""
    if config_dir is not None and (Path(config_dir) / name).is_file():
        return Path(config_dir) / name
    return PACKAGED_DIR / name


def load_section(config_dir: Path | str | None, section: str) -> Any:
    """One file's model (`FILES`), from `config_dir` or the shipped file."""
    name, model = FILES[section]
    path = config_file(config_dir, name)
    raw = read_yaml(path)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise InputError(f"{path}: " + describe_validation(exc, "key '{key}': {message}", got=True)) from None


def load_config(config_dir: Path | str | None) -> Config:
    """The whole configuration: each file from `config_dir` when it is there, else the shipped one.
    Every file is checked; the InputError lists the problems of each bad one."""
    sections: dict[str, Any] = {}
    problems: list[str] = []
    for section in FILES:
        try:
            sections[section] = load_section(config_dir, section)
        except InputError as exc:
            problems.append(str(exc))
    if problems:
        raise InputError("; ".join(problems))
    return Config(**sections)


__all__ = [
    "FILES",
    "PACKAGED_DIR",
    "SETTINGS_FILE",
    "Config",
    "EscalationPolicy",
    "FeatureParams",
    "ModelConfig",
    "config_file",
    "load_config",
    "load_section",
]
