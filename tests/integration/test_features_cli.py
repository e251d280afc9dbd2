"""`churn features`: block-by-block build equals the in-memory panel; bad input exits 2 and writes nothing."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from core.contracts import load_tables
from features.context import FeatureParams
from features.panel import build_panel
from features.registry import feature_specs
from pipelines.cli import main
from pipelines.features import read_snapshots, run_features
from simulation.config import SimulationConfig
from simulation.simulate import simulate


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    out = tmp_path_factory.mktemp("fcli") / "base"
    simulate(SimulationConfig(accounts=150, days=300, seed=9), out)
    return out


def test_blocks_give_the_same_panel_as_one_pass(base, tmp_path):
    summary = run_features(base, tmp_path / "f", every="20d", params=FeatureParams(account_block=37))
    blocked = read_snapshots(tmp_path / "f")
    panel, expected = build_panel(load_tables(base).tables, every="20d")
    panel = panel.sort_values(["cutoff", "account_id"], kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(blocked, panel)
    assert summary["snapshots"] == expected["snapshots"] and summary["label_rates"] == expected["label_rates"]
    assert json.loads((tmp_path / "f" / "feature_dictionary.json").read_text())[0]["name"] == "arr_current"


def test_features_json(base, tmp_path, capsys):
    assert main(["features", "--data", str(base), "--out", str(tmp_path / "f"), "--every", "60d", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["snapshots"] > 0 and payload["features"] == len(feature_specs()) and len(payload["cutoffs"]) >= 2
    assert payload["text_model"] is not None  # text signals on by default


def _copy(base, to):
    to.mkdir()
    for p in base.glob("*.parquet"):
        (to / p.name).write_bytes(p.read_bytes())
    return to


def test_violation_in_a_later_block_exits_2_and_writes_nothing(base, tmp_path, capsys):
    data = _copy(base, tmp_path / "d")
    usage = pd.read_parquet(data / "usage_daily.parquet")
    last = usage["account_id"].max()
    usage.loc[usage.index[usage["account_id"] == last][:3], "logins"] = -5
    usage.to_parquet(data / "usage_daily.parquet")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["features", "--data", str(data), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "table 'usage_daily', column 'logins'" in err and "minimum" in err and last in err
    assert "Traceback" not in err  # bad input is one line, also in the flow's log
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_rows_of_unknown_accounts_and_tickets_are_found(base, tmp_path, capsys):
    data = _copy(base, tmp_path / "d")
    usage = pd.read_parquet(data / "usage_daily.parquet")
    usage = pd.concat([usage, usage.head(2).assign(account_id="GHOST")], ignore_index=True)
    usage.to_parquet(data / "usage_daily.parquet")
    msgs = pd.read_parquet(data / "ticket_messages.parquet")
    msgs = pd.concat(
        [msgs, msgs.head(1).assign(ticket_id="T-NOPE", message_id="M-NEW"), msgs.tail(1)], ignore_index=True
    )
    msgs.to_parquet(data / "ticket_messages.parquet")
    assert main(["features", "--data", str(data), "--out", str(tmp_path / "o"), "--every", "60d"]) == 2
    err = capsys.readouterr().err
    assert "table 'usage_daily', column 'account_id': rule 'references'" in err and "GHOST" in err
    assert "table 'ticket_messages', column 'ticket_id': rule 'references'" in err and "T-NOPE" in err
    assert "table 'ticket_messages', column 'message_id': rule 'unique_key'" in err
    assert not (tmp_path / "o" / "snapshots").exists()


def test_bad_every_fails_before_reading(tmp_path, capsys):
    assert main(["features", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"), "--every", "0d"]) == 2
    assert "--every" in capsys.readouterr().err


def test_csv_input_works_block_by_block(base, tmp_path, capsys):
    csv = tmp_path / "csv"
    csv.mkdir()
    for p in base.glob("*.parquet"):
        pd.read_parquet(p).to_csv(csv / f"{p.stem}.csv", index=False)
    assert (
        main(["features", "--data", str(csv), "--out", str(tmp_path / "f"), "--every", "60d", "--no-text", "--json"])
        == 0
    )
    from_csv = read_snapshots(tmp_path / "f")
    run_features(base, tmp_path / "g", every="60d")
    pd.testing.assert_frame_equal(from_csv, read_snapshots(tmp_path / "g"))
