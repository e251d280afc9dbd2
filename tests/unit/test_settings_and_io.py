"""Settings precedence and messages; atomic writes leave nothing half-done."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from core.errors import InputError
from core.io import atomic_dir, atomic_path, staged_output, write_parquet
from core.settings import load_settings


def test_env_prefix_and_comma_separated_tokens(monkeypatch):
    monkeypatch.setenv("CHURN_API_TOKENS", "alpha, beta,,gamma")
    monkeypatch.setenv("CHURN_STORE_URL", "sqlite:////tmp/x.db")
    settings = load_settings()
    assert settings.api_tokens == ["alpha", "beta", "gamma"]
    assert settings.store_url == "sqlite:////tmp/x.db"


def test_yaml_file_is_below_env_and_code(monkeypatch, tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_text("seed: 7\ndata_dir: /from/yaml\nmlflow_tracking_uri: sqlite:///yaml.db\n")
    monkeypatch.setenv("CHURN_SETTINGS_FILE", str(path))
    monkeypatch.setenv("CHURN_DATA_DIR", "/from/env")
    settings = load_settings(seed=9)
    assert settings.seed == 9  # code wins
    assert settings.data_dir == Path("/from/env")  # then the environment
    assert settings.mlflow_tracking_uri == "sqlite:///yaml.db"  # then the file


def test_bad_setting_names_the_variable(monkeypatch):
    monkeypatch.setenv("CHURN_SEED", "forty-two")
    with pytest.raises(InputError, match="CHURN_SEED"):
        load_settings()


def test_unknown_key_in_settings_file_is_an_error(monkeypatch, tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_text("data_dri: typo\n")
    monkeypatch.setenv("CHURN_SETTINGS_FILE", str(path))
    with pytest.raises(InputError, match="data_dri"):
        load_settings()


def test_atomic_path_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_atomic_dir_replaces_only_on_success(tmp_path):
    target = tmp_path / "snap"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "b").write_text("2")
            raise RuntimeError("boom")
    assert sorted(p.name for p in target.iterdir()) == ["a"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snap"]


def test_staged_output_leaves_user_files_and_nothing_half_done(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.csv").write_text("user data")
    with pytest.raises(RuntimeError):
        with staged_output(out) as stage:
            (stage / "accounts.parquet").write_text("x")
            raise RuntimeError("boom")
    assert sorted(p.name for p in out.iterdir()) == ["mine.csv"]
    with staged_output(out) as stage:
        (stage / "accounts.parquet").write_text("x")
        (stage / "truth").mkdir()
        (stage / "truth" / "meta.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == ["accounts.parquet", "mine.csv", "truth"]
    assert (out / "mine.csv").read_text() == "user data"


def test_write_parquet_roundtrip(tmp_path):
    frame = pd.DataFrame({"a": [1, 2]})
    write_parquet(frame, tmp_path / "x" / "f.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "x" / "f.parquet"), frame)


def test_the_clock_runs_behind_the_wall_clock_by_its_offset():
    import datetime as dt

    from core import clock

    try:
        clock.set_offset(3600)
        behind = dt.datetime.now(dt.UTC) - clock.now()
        assert dt.timedelta(minutes=59) < behind < dt.timedelta(minutes=61)
        assert clock.now().tzinfo is not None
    finally:
        clock.set_offset(0)
    assert abs((dt.datetime.now(dt.UTC) - clock.now()).total_seconds()) < 5
