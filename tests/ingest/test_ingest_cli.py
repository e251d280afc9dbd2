"""`churn ingest`: exit 0 / 2 / 1, one JSON document on stdout with --json, one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pipelines.cli import main

FIXTURES = Path(__file__).parent / "fixtures"


def mapping(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURES / "analytics", tmp_path / "analytics")
    shutil.copytree(FIXTURES / "crm", tmp_path / "crm")
    return tmp_path / "analytics" / "mapping.yaml"


def test_json_goes_to_stdout_only(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["ingest", "--mapping", str(mapping(tmp_path)), "--out", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    payload = json.loads(captured.out)  # exactly one JSON document
    assert payload["tables"]["usage_daily"] == 14 and payload["out"] == str(out)
    assert "note: no help desk given: tickets written empty" in captured.err


def test_human_output(tmp_path, capsys):
    assert main(["ingest", "--mapping", str(mapping(tmp_path)), "--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "ingested 2 source(s) into" in captured.err and "usage_daily=14" in captured.err


def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys):
    path = mapping(tmp_path)
    path.write_text(path.read_text().replace("logins:", "login:"))
    assert main(["ingest", "--mapping", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"error: {path}: events: unknown key 'login'; expected one of " in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_missing_flag_exits_2(capsys):
    assert main(["ingest", "--out", "x"]) == 2
    assert "--mapping" in capsys.readouterr().err
