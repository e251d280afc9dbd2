"""Commands as a user runs them, as processes: stopped by SIGTERM or SIGINT they end within 10 s,
leave no process behind and no partial output; `churn serve` refuses to start on a bad setting;
the local Prefect server is started once, reused, and stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from core import processes
from serving.process import free_port
from simulation.config import SimulationConfig
from simulation.simulate import simulate
from tests.conftest import champion_environment

ROOT = Path(__file__).resolve().parents[2]
STOP_WITHIN = 10.0


def _tree(pid: int) -> set[int]:
    """The process and everything under it (psutil where installed, else /proc)."""
    try:
        import psutil
    except ImportError:
        return {pid, *processes.descendants(pid)}
    with_children = psutil.Process(pid)
    return {pid, *(p.pid for p in with_children.children(recursive=True))}


def _left(pids: set[int]) -> list[int]:
    return [p for p in pids if processes.alive(p)]


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """`churn ARGS` in its own session (as a terminal would start it), stderr to `log`."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        start_new_session=True,
    )


def _wait_for(condition, timeout: float, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"exited early with {process.returncode}: {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"not ready after {timeout:.0f}s: {log.read_text()[-2000:]}")
        time.sleep(0.2)


def _stop_and_check(process: subprocess.Popen, signum: int, log: Path) -> float:
    """Send `signum`; the command and everything it started must be gone within STOP_WITHIN seconds."""
    tree = _tree(process.pid)
    sent = time.monotonic()
    process.send_signal(signum)
    try:
        code = process.wait(timeout=STOP_WITHIN)
    except subprocess.TimeoutExpired:
        for pid in tree | processes.descendants(process.pid):
            os.kill(pid, signal.SIGKILL)
        pytest.fail(f"still running {STOP_WITHIN:.0f}s after {signal.Signals(signum).name}: {log.read_text()[-2000:]}")
    took = time.monotonic() - sent
    deadline = time.monotonic() + 1.0  # the last children are being reaped by init
    while _left(tree) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _left(tree), f"left behind: {_left(tree)}"
    assert code == 128 + signum, log.read_text()[-2000:]
    assert f"stopped by {signal.Signals(signum).name}" in log.read_text()
    return took


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """The session's environment (its Prefect server in PREFECT_API_URL) with the run's files under tmp_path."""
    return {
        **os.environ,
        "CHURN_SETTINGS_FILE": "/nonexistent/settings.yaml",
        "CHURN_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "CHURN_STORE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        "CHURN_DATA_DIR": str(tmp_path / "data"),
        "CHURN_PREFECT_DIR": str(tmp_path / "local-prefect"),
    }


@pytest.fixture(scope="module")
def big_base(tmp_path_factory) -> Path:
    """Large enough that `churn features --no-text` works for several seconds."""
    out = tmp_path_factory.mktemp("lifecycle") / "base"
    simulate(SimulationConfig(accounts=2000, days=730, seed=4), out)
    return out


@pytest.mark.slow
def test_pipeline_command_stops_on_sigterm_and_leaves_no_partial_output(big_base, env, tmp_path):
    out = tmp_path / "work" / "features"
    out.mkdir(parents=True)
    (out / "keep.txt").write_text("mine")
    log = tmp_path / "features.log"
    process = _start(["features", "--data", str(big_base), "--out", str(out), "--no-text"], env, log)
    _wait_for(lambda: "features: load" in log.read_text(), 120, process, log)  # the blocks are being built
    time.sleep(1.0)
    took = _stop_and_check(process, signal.SIGTERM, log)
    print(f"churn features stopped {took:.2f}s after SIGTERM")
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]  # no snapshots/, no summary, no temporary entries
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".")]  # no scratch folder beside it
    assert not (tmp_path / "local-prefect" / "server.json").exists()  # PREFECT_API_URL set: no local server started


@pytest.mark.slow
def test_schedule_stops_on_sigterm(env, tmp_path):
    log = tmp_path / "schedule.log"
    process = _start(["schedule", "--data", str(tmp_path / "data"), "--work", str(tmp_path / "work")], env, log)
    _wait_for(lambda: "serving deployments" in log.read_text(), 120, process, log)
    time.sleep(3.0)  # the runner registers its deployments and starts polling
    took = _stop_and_check(process, signal.SIGTERM, log)
    print(f"churn schedule stopped {took:.2f}s after SIGTERM")


@pytest.fixture(scope="module")
def champion(tmp_path_factory):
    with champion_environment(tmp_path_factory.mktemp("serve")) as environment:
        yield environment


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_stops_bentoml_and_its_workers(champion, signum, tmp_path):
    port = free_port()
    log = tmp_path / "serve.log"
    process = _start(["serve", "--port", str(port)], {**os.environ, **champion["env"]}, log)

    def ready() -> bool:
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200
        except OSError:
            return False

    _wait_for(ready, 240, process, log)
    assert len(_tree(process.pid)) >= 3  # churn, bentoml serve, its worker(s)
    took = _stop_and_check(process, signum, log)
    print(f"churn serve stopped {took:.2f}s after {signal.Signals(signum).name}")
    assert not ready()


@pytest.mark.slow
def test_serve_fails_fast_on_a_model_it_cannot_load(champion, tmp_path):
    for setting, value in (
        ("CHURN_MODEL_URI", "models:/churn-risk@nobody"),
        ("CHURN_STORE_URL", "sqlite:////proc/no/such/store.db"),
    ):
        started = time.monotonic()
        run = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", "serve", "--port", str(free_port())],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, **champion["env"], setting: value},
            timeout=120,
        )
        assert run.returncode == 2, run.stderr
        errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and errors[0].startswith(f"error: {setting} {value}:"), run.stderr
        assert "Traceback" not in run.stderr and time.monotonic() - started < 60


@pytest.mark.slow
def test_local_prefect_server_started_once_reused_and_stopped(env, tmp_path):
    """No PREFECT_API_URL: the first pipeline command starts the local server, the next reuses it,
    `churn prefect stop` stops it; commands that do no pipeline work never start it."""
    env = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
    folder = Path(env["CHURN_PREFECT_DIR"])
    base = tmp_path / "base"
    simulate(SimulationConfig(accounts=60, days=200, seed=2), base)

    def churn(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pipelines.cli", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )

    try:
        assert churn("validate", "--data", str(base)).returncode == 0
        assert churn("prefect", "status").returncode == 0 and not (folder / "server.json").exists()
        first = churn("features", "--data", str(base), "--out", str(tmp_path / "f1"), "--no-text")
        assert first.returncode == 0, first.stderr
        assert "starting a local Prefect server" in first.stderr
        state = json.loads((folder / "server.json").read_text())
        second = churn("features", "--data", str(base), "--out", str(tmp_path / "f2"), "--no-text")
        assert second.returncode == 0 and "starting a local Prefect server" not in second.stderr
        assert json.loads((folder / "server.json").read_text())["pid"] == state["pid"] and processes.alive(state["pid"])
        status = json.loads(churn("prefect", "status", "--json").stdout)
        assert status["running"] and status["url"] == state["url"]
        assert churn("prefect", "stop").returncode == 0
        assert not processes.alive(state["pid"]) and not (folder / "server.json").exists()
    finally:
        from pipelines.prefect_server import stop

        stop(folder)
