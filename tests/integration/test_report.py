"""The leadership report: self-contained HTML with every section, logged to the model's run, and
rendered by headless Chromium without console errors where Chromium is installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import mlflow
import numpy as np
import pytest

from models.drift import psi
from pipelines.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from tests.conftest import champion_environment

    root = tmp_path_factory.mktemp("report")
    with champion_environment(root) as env:
        out = root / "churn_report.html"
        assert main(["report", "--out", str(out), "--json"]) == 0
        yield env, out


def test_report_is_self_contained_with_every_section(report, capsys):
    _, out = report
    html = out.read_text()
    for heading in (
        "Accounts and revenue at risk",
        "What drives the risk",
        "The accounts most at risk",
        "Escalations: from flag to outcome",
        "Escalations and outcomes",
        "Can we trust the model?",
    ):
        assert heading in html
    assert not re.search(r'(src|href)="https?://', html)  # nothing fetched from elsewhere
    assert "<script" not in html
    assert len(re.findall(r'src="data:image/png;base64,', html)) >= 2
    assert "escalations opened" in html and "within 90 days" in html


def test_report_has_a_shap_beeswarm_and_a_waterfall_per_top_account(report):
    """shap's beeswarm of the base under the drivers, and one waterfall for each of the first ten
    accounts of the top-risk table, in the table's order, inline, with captions saying what they show."""
    import base64

    _, out = report
    html = out.read_text()
    assert re.search(r'<img alt="SHAP beeswarm of the 90-day risk" src="data:image/png;base64,', html)
    assert "one dot per account and signal" in html and "log-odds" in html
    section = html[html.index("The accounts most at risk") : html.index("Escalations: from flag to outcome")]
    table_ids = re.findall(r"<td>[^<]*\((A\d+)\)</td>", section)
    shown = re.findall(r'<img alt="why (A\d+) is at risk" src="data:image/png;base64,([^"]+)"', section)
    assert len(table_ids) == 20 and [a for a, _ in shown] == table_ids[:10]
    assert "the first 10 of the 20 accounts above" in section
    assert all(base64.b64decode(png)[:8] == b"\x89PNG\r\n\x1a\n" for _, png in shown)


def test_report_is_logged_to_the_model_run(report):
    env, _ = report
    client = mlflow.MlflowClient(env["env"]["CHURN_MLFLOW_TRACKING_URI"])
    version = client.get_model_version_by_alias("churn-risk", "champion")
    assert "report/churn_report.html" in {a.path for a in client.list_artifacts(version.run_id, "report")}


def test_outcomes_section_says_it_is_too_early_for_todays_escalations(report):
    """The demo's store holds only the escalations of the last scoring run: none has had 90 days to
    show what happened, and the section says so instead of printing a precision of nothing."""
    _, out = report
    html = out.read_text()
    section = html[html.index("Escalations and outcomes") : html.index("Can we trust the model?")]
    assert "too early to know" in section and "Does escalating help?" in section and "Too few to tell" in section
    assert "<td>cs-standard</td>" in section or "<td>cs-priority</td>" in section


def test_evaluate_json_has_an_escalations_block_logged_to_the_models_run(report, capsys):
    env, _ = report
    capsys.readouterr()
    assert main(["evaluate", "--features", str(env["root"] / "f"), "--folds", "1", "--json"]) == 0
    block = json.loads(capsys.readouterr().out)["escalations"]
    assert (
        block["available"]
        and block["escalations"] > 0
        and block["overall"]["matured"] == 0
        and block["horizon_days"] == 90
    )
    client = mlflow.MlflowClient(env["env"]["CHURN_MLFLOW_TRACKING_URI"])
    run_id = client.get_model_version_by_alias("churn-risk", "champion").run_id
    assert block["mlflow_run"] == run_id
    assert client.get_run(run_id).data.metrics["escalations.count"] == block["escalations"]
    assert {"escalations/escalations.json", "escalations/escalations_by_group.csv"} <= {
        a.path for a in client.list_artifacts(run_id, "escalations")
    }


def test_psi_is_zero_for_the_same_data_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    base = rng.normal(size=5000)
    assert psi(base, rng.normal(size=5000)) < 0.02
    assert psi(base, rng.normal(1.0, 1, size=5000)) > 0.25


def test_why_gives_every_reason_its_points_as_the_api_words_them():
    """A reason worth less than a point reads "(+0.4)", as the API's "adds 0.4 points", never "(+0)"."""
    import pandas as pd

    from reports.leadership import _why

    top = pd.DataFrame(
        {
            "reason_1": ["logins down 60%"],
            "reason_1_points": [12.3],
            "reason_2": ["customer tone 0.14"],
            "reason_2_points": [0.5],
            "reason_3": ["3 tickets"],
            "reason_3_points": [0.01],
        }
    )
    assert _why(top).iloc[0] == "logins down 60% (+12); customer tone 0.14 (+0.5); 3 tickets"


def test_report_renders_in_headless_chromium_without_console_errors(report, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Chromium not installed (Debian: apt-get install chromium; .ci/run installs it)")
    _, out = report
    shot = tmp_path / "report.png"
    result = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            f"--screenshot={shot}",
            "--window-size=1200,3000",
            out.as_uri(),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.is_file() and shot.stat().st_size > 10_000, result.stderr[-2000:]
    console = [
        line for line in result.stderr.splitlines() if "CONSOLE" in line and ("Error" in line or "error" in line)
    ]
    assert console == [], console
    print(json.dumps({"screenshot": str(shot), "bytes": shot.stat().st_size}))
