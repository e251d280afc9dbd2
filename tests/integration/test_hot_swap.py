"""A new champion without a restart, over real HTTP: `churn serve` with a 1-second poll; a new
version is promoted while 8 clients call /score, then rolled back with `churn rollback`. No request
fails, the answers switch version both times within the poll interval plus the reload, and every
kind of answer names the version it came from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Self

import pytest

from core import processes
from serving.process import free_port
from tests.conftest import champion_environment

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
TOKEN = "swap-token"
POLL_SECONDS = 1.0
CLIENTS = 8


def _post(base: str, path: str, body: dict) -> tuple[int, object]:
    request = urllib.request.Request(
        f"{base}{path}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


class Clients:
    """CLIENTS threads calling /score for one stored account each, as fast as they can; every answer
    is kept as (time received, status, model version)."""

    def __init__(self, base: str, accounts: list[str]):
        self.base, self.accounts = base, accounts
        self.answers: list[tuple[float, int, str | None]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(CLIENTS)]

    def _run(self, i: int) -> None:
        body = {"accounts": [{"account_id": self.accounts[i % len(self.accounts)]}]}
        while not self._stop.is_set():
            try:
                status, out = _post(self.base, "/score", body)
            except OSError as exc:  # a refused or reset connection is an error too
                status, out = 0, repr(exc)
            version = out[0]["model_version"] if status == 200 else None
            self.answers.append((time.time(), status, version))
            if status != 200:
                self.errors.append(f"{status}: {str(out)[:200]}")

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def switch(self, since: float, version: str, *, timeout: float = 90.0, settle: float = 3.0) -> float:
        """Seconds from `since` (time.time() when the alias moved) to the last answer of another
        version, once `settle` seconds of answers have all come from `version`."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            time.sleep(0.2)
            after = [(t, v) for t, s, v in list(self.answers) if t >= since and s == 200]
            other = [t for t, v in after if v != version]
            last_other = max(other, default=since)
            if any(v == version for t, v in after) and time.time() - last_other >= settle:
                return last_other - since
        pytest.fail(f"answers did not switch to version {version} within {timeout:.0f} s")


def _tagged_at(version: str, tag: str) -> float:
    """A registry time tag of a version (ISO 8601, written just before the alias moved) as time.time()."""
    import datetime as dt

    from models import registry

    return dt.datetime.fromisoformat(registry.describe(registry.version_uri(version))["version_tags"][tag]).timestamp()


def _churn(*args: str, env: dict) -> subprocess.CompletedProcess:
    """`churn ARGS` as a user runs it, in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _churn_json(*args: str, env: dict) -> dict:
    run = _churn(*args, "--json", env=env)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_promote_and_roll_back_while_8_clients_score(tmp_path):
    from models import registry
    from models.curve import CurveParams, fit_curve
    from pipelines.models import feature_names

    with champion_environment(tmp_path, tokens=TOKEN) as environment:
        env = {
            **os.environ,
            **environment["env"],
            "CHURN_MODEL_POLL_SECONDS": str(POLL_SECONDS),
            "BENTOML_HOME": str(tmp_path / "bentoml"),
        }
        # a second version (registered as the challenger; promoted below while the clients run)
        panel = environment["features"]
        model = fit_curve(
            panel,
            feature_names(panel),
            CurveParams(n_estimators=60, learning_rate=0.1, min_child_samples=40, num_threads=1),
        )
        registry.connect(env["CHURN_MLFLOW_TRACKING_URI"])
        new = registry.log_training(
            model,
            panel=panel,
            params={},
            metrics={"backtest.lightgbm.roc_auc_90d": 0.8},
            tables={},
            documents={},
            figures={},
            tags={"features_dir": str(tmp_path / "f")},
        )["version"]
        assert new == "2"
        import pandas as pd

        stored = pd.read_parquet(tmp_path / "scores" / "features.parquet")["account_id"]
        accounts = stored.head(CLIENTS).tolist()

        port, log = free_port(), tmp_path / "serve.log"
        with log.open("wb") as output:  # BentoML's workers log to stdout
            server = processes.start(
                [sys.executable, "-m", "pipelines.cli", "serve", "--port", str(port)],
                cwd=ROOT,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    if urllib.request.urlopen(f"{base}/readyz", timeout=2).status == 200:
                        break
                except OSError:
                    pass
                assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.5)

            with Clients(base, accounts) as clients:
                time.sleep(3.0)
                assert {v for _, s, v in clients.answers if s == 200} == {"1"} and not clients.errors, clients.errors[
                    :3
                ]
                started = time.time()
                assert _churn_json("promote", "--force", env=env)["champion"] == new
                promote_took = time.time() - started
                # when the alias moved: the command's own start-up (imports, MLflow) is not the server's delay
                forward = clients.switch(_tagged_at(new, "champion.since"), new)
                reloads = {
                    (info["loaded_at"], info["load_seconds"])
                    for info in (_post(base, "/model", {})[1] for _ in range(8))
                }

                # every kind of answer names the version it came from
                ticket = {
                    "ticket_id": "HS-1",
                    "messages": [
                        {"author": "customer", "sent_at": "2025-03-11T09:00:00Z", "body": "Exports fail again."}
                    ],
                }
                for _ in range(4):  # both workers
                    status, scored = _post(base, "/assess_ticket", {"account_id": accounts[0], "ticket": ticket})
                    assert status == 200 and scored["model_version"] == scored["risk"]["model_version"] == new
                    assert scored["decision"]["model_version"] == new
                    status, explained = _post(base, "/explain", {"account_id": accounts[0], "horizon_days": 30})
                    assert status == 200 and explained["model_version"] == new
                    assert _post(base, "/model", {})[1]["model_version"] == new

                rolled = _churn_json(
                    "rollback", "--reason", "calibration drifted after the swap", "--by", "Ada Ops", env=env
                )
                assert (rolled["champion"], rolled["champion_before"]) == ("1", new)
                back = clients.switch(_tagged_at("1", "restored.at"), "1")

                # a champion that cannot be loaded: the workers keep serving version 1 and log why
                import mlflow

                broken = str(
                    mlflow.MlflowClient()
                    .create_model_version(registry.MODEL_NAME, source=str(tmp_path / "no-such-model"))
                    .version
                )
                registry.move_champion(broken, decision={"forced": True})
                moved = time.time()
                time.sleep(4 * POLL_SECONDS)
                assert {v for t, s, v in list(clients.answers) if t >= moved} == {"1"}
                assert _churn_json("rollback", "--reason", "version 3 does not load", env=env)["champion"] == "1"
            requests = len(clients.answers)
            served = {v for _, s, v in clients.answers if s == 200}
        finally:
            processes.stop([server], 30)

        print(
            f"hot swap: {requests} /score requests from {CLIENTS} clients, {len(clients.errors)} errors; every answer from version {new} "
            f"{forward:.2f} s after `churn promote` moved the alias (the command took {promote_took:.1f} s), and from version 1 again "
            f"{back:.2f} s after `churn rollback` (poll every {POLL_SECONDS:.0f} s); reload of version {new} (load + "
            f"{len(stored)} stored answers, per worker): "
            f"{', '.join(f'{seconds} s' for _, seconds in sorted(reloads))}"
        )
        assert clients.errors == [] and served == {"1", new}
        assert "could not swap to the new champion version" in log.read_text(), log.read_text()[-3000:]
        # generous: the poll interval, the reload, and two busy cores shared with the 8 clients
        assert forward < POLL_SECONDS + 20 and back < POLL_SECONDS + 20

        # the rollback is recorded on both versions, and the alias history holds
        registry.connect(env["CHURN_MLFLOW_TRACKING_URI"])
        tags = {v: registry.describe(registry.version_uri(v))["version_tags"] for v in ("1", new)}
        assert (
            tags[new]["rollback.reason"] == "calibration drifted after the swap"
            and tags[new]["rollback.by"] == "Ada Ops"
        )
        assert tags[new]["rollback.to"] == "1" and tags[new]["champion.previous"] == "1"
        # the latest restore
        assert (tags["1"]["restored.from"], tags["1"]["restored.reason"]) == (broken, "version 3 does not load")
        assert registry.alias_version() == "1"

        # version 1 replaced no champion and nothing is below it: a clear error, nothing moved
        again = _churn("rollback", "--reason", "again", env=env)
        assert again.returncode == 1 and again.stderr.strip().splitlines()[-1] == (
            "error: the champion is version 1 and no earlier version of churn-risk exists to roll back to"
        ), again.stderr
        blank = _churn("rollback", "--reason", " ", env=env)
        assert blank.returncode == 2 and "--reason" in blank.stderr and registry.alias_version() == "1"

        # the watcher's own account of a failed load, and the next good version taken after it
        from core.settings import load_settings
        from serving import schemas
        from serving.hot_swap import ModelWatcher
        from serving.runtime import ServingRuntime

        runtime = ServingRuntime(load_settings(), text=False)
        watcher = ModelWatcher(runtime, POLL_SECONDS)
        registry.move_champion(broken, decision={"forced": True})
        assert (
            watcher.check() is None
            and f"models:/churn-risk/{broken}" in watcher.last_error
            and runtime.state.version == "1"
        )
        registry.move_champion(new, decision={"forced": True})
        assert watcher.check() == new and watcher.last_error is None
        assert runtime.score([schemas.AccountQuery(account_id=accounts[0])])[0].model_version == new


def test_rollback_follows_the_alias_history_else_the_highest_lower_version():
    from models.promotion import rollback_target

    versions = {"1": {}, "2": {}, "3": {"champion.previous": "1"}, "4": {}}
    assert rollback_target("3", versions)[0] == "1"  # 2 was never champion before 3
    assert rollback_target("4", versions)[0] == "3"  # promoted before the history was kept
    assert rollback_target("3", {"2": {}, "3": {"champion.previous": "1"}})[0] == "2"  # the recorded one was deleted
    target, why = rollback_target("1", versions)
    assert target is None and "no lower version" in why
