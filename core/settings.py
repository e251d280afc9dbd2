"""One settings object per entry point (pydantic-settings, environment prefix ``CHURN_``).

Precedence, highest first: values passed in code (CLI flags), environment variables
(``CHURN_DATA_DIR`` ...), the YAML file named by ``CHURN_SETTINGS_FILE`` (default: settings.yaml of
the config folder, else the one shipped in core/config/), then the defaults below. Feature and
model code never reads settings itself: entry points build one object and pass down what each
function needs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from core.config import SETTINGS_FILE, config_file
from core.config.base import read_yaml
from core.errors import InputError, describe_validation

#: The config folder when CHURN_CONFIG_DIR is unset: config/ of the folder a command runs in. Its
#: YAML files replace the defaults shipped inside the package (core/config/); absent, those apply.
DEFAULT_CONFIG_DIR = Path("config")


def _settings_file() -> Path:
    """CHURN_SETTINGS_FILE, else settings.yaml of the config folder (CHURN_CONFIG_DIR), else the shipped one."""
    named = os.environ.get("CHURN_SETTINGS_FILE")
    return Path(named) if named else config_file(os.environ.get("CHURN_CONFIG_DIR", DEFAULT_CONFIG_DIR), SETTINGS_FILE)


class Settings(BaseSettings):
    """Operator-facing settings. Every field can be set as ``CHURN_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="CHURN_", extra="forbid", validate_default=True)

    data_dir: Path = Field(Path("data"), description="Folder with the input tables (<table>.parquet or .csv).")
    config_dir: Path = Field(
        DEFAULT_CONFIG_DIR,
        description="Folder whose escalation.yaml, features.yaml, model.yaml and settings.yaml replace the defaults "
        "shipped with the package (core/config/); a file it does not have is the shipped one.",
    )
    mlflow_tracking_uri: str = Field("sqlite:///mlflow.db", description="MLflow tracking and registry URI.")
    store_url: str = Field("sqlite:///data/store.db", description="SQLAlchemy URL of the operational store.")
    api_tokens: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Bearer tokens accepted by the scoring API (comma-separated)."
    )
    dask_address: str | None = Field(
        None, description="Dask scheduler address; unset runs on Prefect's default runner."
    )
    workers: int = Field(
        2, ge=1, le=64, description="Feature blocks built at the same time (threads) when no Dask address is set."
    )
    seed: int = Field(42, description="Default random seed for simulation and training.")
    sentiment_model: str = Field(
        "default",
        description="'default' (shipped MiniLM encoder + head), or a Hugging Face sequence-classification model: local path or hub id.",
    )
    sentiment_head: Path | None = Field(
        None,
        description=(
            "Head trained by `churn sentiment-train` [default: DATA_DIR/models/sentiment_head.json if present, "
            "else the shipped head]."
        ),
    )
    text_cache: Path | None = Field(
        None, description="SQLite cache of text scores [default: DATA_DIR/text_cache.sqlite]."
    )
    text_runtime: Literal["auto", "openvino", "onnx", "torch"] = Field(
        "auto",
        description="What runs the transformer encoder: 'auto' (ONNX Runtime in float32, else PyTorch), 'openvino' (bfloat16 where the CPU "
        "has the instructions), 'onnx' (an error if they cannot), 'torch'.",
    )
    text_encoder: Literal["cascade", "transformer", "static"] = Field(
        "cascade",
        description="How sentences are embedded and scored: 'cascade' (static embeddings distilled from the transformer; the transformer "
        "scores only the sentences the static head is unsure of), 'transformer' (every sentence), 'static' (none).",
    )
    encoder_cache: Path | None = Field(
        None,
        description="Where the sentence encoder's ONNX export and static table are kept [default: ~/.cache/churn-platform/encoders].",
    )
    model_uri: str = Field("models:/churn-risk@champion", description="The model the API serves (an MLflow model URI).")
    model_poll_seconds: float = Field(
        30,
        ge=0,
        description="How often the API looks for a new version behind CHURN_MODEL_URI's alias and "
        "swaps to it without a restart (0: never).",
    )
    score_cron: str = Field("0 6 * * *", description="When `churn schedule` runs the daily scoring flow (cron, UTC).")
    retrain_cron: str = Field("0 3 * * 1", description="When `churn schedule` runs the retraining flow (cron, UTC).")
    prefect_dir: Path | None = Field(
        None,
        description="Database, log and state of the local Prefect server the pipeline commands share "
        "(unless PREFECT_API_URL names one) [default: ~/.cache/churn-platform/prefect].",
    )
    prefect_idle_minutes: int = Field(
        60, ge=0, description="The local Prefect server stops after this many minutes without a request (0: never)."
    )
    scores_dir: Path | None = Field(
        None,
        description=(
            "Output folder of the latest `churn score` run, whose features.parquet the API looks accounts up "
            "in [default: DATA_DIR/scores]."
        ),
    )
    clock_offset_seconds: float = Field(
        0,
        ge=0,
        description="How far the API, the CS workspace, the store and the relay run behind the wall clock (seconds; "
        "0: the wall clock). Unset, the last demo's data and store run on the demo's clock: it read the end of "
        "the demo's data when the demo finished and runs on from there (serving/launch.py, core/clock.py).",
    )
    relay_interval_seconds: float = Field(
        1.0,
        ge=0,
        description="How often the API's background relay sends the alert outbox and checks "
        "response windows, follow-ups and expiry (seconds; 0: no relay in the API, run `churn alerts relay`).",
    )
    workspace_secret: str | None = Field(
        None,
        repr=False,
        min_length=32,
        description="Key that signs the workspace's session cookies (at least 32 characters) [default: a random "
        "key made once in DATA_DIR/workspace_secret, mode 0600, shared by every worker on this machine].",
    )
    workspace_users: Path | None = Field(
        None,
        description="YAML file declaring workspace users (username, name, role, password_hash from "
        "`churn users hash`), besides those `churn users add` keeps in the store.",
    )
    workspace_secure_cookies: bool = Field(
        False, description="Mark the workspace's session cookie Secure (set it when users reach the server over https)."
    )
    workspace_session_hours: float = Field(
        12, gt=0, description="How long a workspace sign-in lasts without signing in again (hours)."
    )
    report_file: Path | None = Field(
        None,
        description="The leadership report the workspace serves at /app/report (a `churn report --out` file) "
        "[default: the last `churn demo`'s report].",
    )

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [token.strip() for token in value.split(",") if token.strip()]
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _settings_file()
        if path.is_file():
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)


def load_settings(**overrides: Any) -> Settings:
    """Build the settings object; a bad value is an `InputError` naming the setting."""
    clean = {key: value for key, value in overrides.items() if value is not None}
    path = _settings_file()
    if path.is_file():
        read_yaml(path)  # not YAML, or not a mapping: an error naming the file
    try:
        return Settings(**clean)
    except ValidationError as exc:
        problems = describe_validation(exc, "setting '{key}' (env CHURN_{KEY}): {message}", empty="settings")
        raise InputError(f"invalid settings (flags, CHURN_* environment variables, {path}): " + problems) from None
