"""Shared fixtures: a tiny hand-built data set that meets every contract, and a simulated base."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

# Tests must never pick up a developer's own settings file or environment.
os.environ.setdefault("CHURN_SETTINGS_FILE", "/nonexistent/settings.yaml")


def _only_paths_are_files() -> None:
    """While MLflow loads a model it puts a stand-in in sys.modules["dbutils"] whose every attribute,
    `__file__` too, is another stand-in. Hypothesis scans sys.modules for constants before a test
    and failed every later @given test of a CI run with "argument of type 'MockDbutils' is not
    iterable": its check of a module's file now answers no for anything but a path string."""
    from hypothesis.internal.conjecture import providers

    local = providers.is_local_module_file
    providers.is_local_module_file = lambda path: isinstance(path, str) and local(path)


_only_paths_are_files()


def pytest_configure(config) -> None:
    _own_postgres_database()


def _own_postgres_database() -> None:
    """Under pytest-xdist each worker gets its own PostgreSQL database (churn_test_gw0, ...): the store
    tests drop every table before they start, and two workers sharing one database would drop the
    tables the other is using."""
    url, worker = os.environ.get("CHURN_TEST_POSTGRES_URL"), os.environ.get("PYTEST_XDIST_WORKER")
    if not url or not worker:
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    shared = make_url(url)
    own = shared.set(database=f"{shared.database}_{worker}")
    engine = create_engine(shared, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            exists = connection.execute(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": own.database})
            if exists.scalar() is None:
                # template0 accepts no connections, so workers creating theirs at once do not block each other
                connection.execute(text(f'CREATE DATABASE "{own.database}" TEMPLATE template0'))
    finally:
        engine.dispose()
    os.environ["CHURN_TEST_POSTGRES_URL"] = own.render_as_string(hide_password=False)


#: CHURN_TEST_SHUFFLE=<seed> runs the tests in a shuffled order, to show that none depends on another
SHUFFLE = "CHURN_TEST_SHUFFLE"


def pytest_report_header(config) -> str | None:
    seed = os.environ.get(SHUFFLE)
    return f"{SHUFFLE}={seed}: modules, and the tests within each, in a shuffled order" if seed else None


@pytest.hookimpl(trylast=True)  # after pytest's own ordering by fixture
def pytest_collection_modifyitems(config, items) -> None:
    """Modules stay together (their module-scoped fixtures are built once) and those with slow tests
    run first: `make test` hands whole modules to two workers, and a long module started last
    would leave one worker idle while the other finishes it. With CHURN_TEST_SHUFFLE=<seed>, the
    modules and the tests within each run in a shuffled order instead; the same seed, the same order."""
    import random

    modules: dict[str, list] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::")[0], []).append(item)
    groups = list(modules.values())
    seed = os.environ.get(SHUFFLE)
    if seed:
        rng = random.Random(seed)
        rng.shuffle(groups)
        for group in groups:
            rng.shuffle(group)
    else:
        groups.sort(key=lambda group: not any(item.get_closest_marker("slow") for item in group))
    items[:] = [item for group in groups for item in group]


def shared_folder(tmp_path_factory, name: str) -> Path:
    """A folder every worker of this run shares (pytest-xdist gives each its own temporary root,
    under one parent), for what is made once and only read after: the first worker to need it makes
    it, under a lock, and the others wait and reuse it."""
    root = tmp_path_factory.getbasetemp()
    folder = (root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root) / name
    folder.mkdir(exist_ok=True)
    return folder


#: the folder this run's workers share (`shared_folder`), set by the session fixture `shared_root`
_SHARED: list[Path] = []


@pytest.fixture(scope="session", autouse=True)
def shared_root(tmp_path_factory) -> Path:
    _SHARED[:] = [shared_folder(tmp_path_factory, "shared")]
    return _SHARED[0]


@pytest.fixture(scope="session", autouse=True)
def encoder_exports(tmp_path_factory):
    """The sentence encoder's ONNX export and static table, made once per run in a folder the
    workers share (not the user's ~/.cache; text/encoder.py make_once): the setting for the CLI
    runs, flows and servers the session starts, and the default for encoders the tests build themselves."""
    from text import encoder

    folder = shared_folder(tmp_path_factory, "encoders")
    os.environ["CHURN_ENCODER_CACHE"] = str(folder)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(encoder, "default_export_dir", lambda: folder)
        yield


@pytest.fixture(scope="session", autouse=True)
def prefect_backend(tmp_path_factory):
    """One temporary Prefect server and database for the whole session (the pipeline commands run
    flows), with Prefect's home, results and logs kept out of the user's ~/.prefect."""
    import sys

    from pipelines.console import prefect_console_to

    home = tmp_path_factory.mktemp("prefect")
    # a local server a test starts (pipelines/prefect_server.py) lives here, and is stopped below
    os.environ.update(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_LOCAL_STORAGE_PATH": str(home / "storage"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "CHURN_PREFECT_DIR": str(home / "local-server"),
        }
    )
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    from pipelines.prefect_server import stop

    with prefect_test_harness(server_startup_timeout=120):
        os.environ["PREFECT_API_URL"] = PREFECT_API_URL.value()  # commands the tests run as processes use it too
        try:
            yield
        finally:
            os.environ.pop("PREFECT_API_URL", None)
            stop(home / "local-server")
            prefect_console_to(sys.__stderr__)  # the last test's captured stderr is closed by now


@pytest.fixture
def one_waterfall(monkeypatch):
    """The leadership report with one account waterfall instead of ten, for tests that run the
    report without testing it (tests/integration/test_report.py does): each shap figure is about a
    second of drawing text on a 2-core machine."""
    from reports import leadership

    monkeypatch.setattr(leadership, "WATERFALLS", 1)


@pytest.fixture(autouse=True)
def prefect_logs_to_this_tests_stderr():
    """Prefect's console handler keeps the stream it was created with; pytest gives each test its
    own captured stderr and closes it afterwards."""
    import sys

    from pipelines.console import prefect_console_to

    prefect_console_to(sys.stderr)
    yield


def run_in_threads(work, n: int, timeout: float | None = None) -> list[BaseException]:
    """Call work(0) .. work(n - 1) on n threads at once; the exceptions they raised (a TimeoutError
    for each still running after `timeout` seconds, left behind as daemons)."""
    import threading

    start = threading.Barrier(n)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        start.wait()
        try:
            work(i)
        except BaseException as exc:  # noqa: BLE001 - returned to the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return errors + [TimeoutError(f"{t.name} still running after {timeout} s") for t in threads if t.is_alive()]


def tiny_tables() -> dict[str, pd.DataFrame]:
    """Two accounts, one ticket each, every table non-empty; valid under the contracts (as CSV text)."""
    return {
        "accounts": pd.DataFrame(
            {
                "account_id": ["A1", "A2"],
                "name": ["Acme Inc", "Globex Ltd"],
                "segment": ["smb", "enterprise"],
                "industry": ["software", "retail"],
                "region": ["emea", "north_america"],
                "plan": ["growth", "enterprise"],
                "seats": ["10", "400"],
                "arr": ["9000", "250000.5"],
                "contract_start": ["2024-01-01T00:00:00Z", "2023-06-15"],
                "billing": ["monthly", "annual"],
                "csm_owner": ["", "Laura Chen"],
                "exec_sponsor": ["no", "yes"],
            }
        ),
        "usage_daily": pd.DataFrame(
            {
                "account_id": ["A1", "A1", "A2"],
                "date": ["2024-01-02", "2024-01-03", "2024-01-02"],
                "active_users": ["3", "0", "250"],
                "logins": ["4", "0", "300"],
                "session_minutes": ["30.5", "0", "4000"],
                "key_feature_events": ["10", "0", "900"],
                "distinct_features_used": ["5", "0", "18"],
                "api_calls": ["0", "0", "12000"],
            }
        ),
        "tickets": pd.DataFrame(
            {
                "ticket_id": ["T1", "T2"],
                "account_id": ["A1", "A2"],
                "created_at": ["2024-01-05T10:00:00Z", "2024-01-06T09:30:00+01:00"],
                "priority": ["normal", "urgent"],
                "category": ["how_to", "billing"],
                "channel": ["email", "phone"],
            }
        ),
        "ticket_events": pd.DataFrame(
            {
                "ticket_id": ["T1", "T1", "T1", "T2"],
                "at": ["2024-01-05T12:00:00Z", "2024-01-06T12:00:00Z", "2024-01-07T12:00:00Z", "2024-01-06T12:00:00Z"],
                "kind": ["first_response", "resolved", "csat", "first_response"],
                "value": ["", "", "5", ""],
            }
        ),
        "ticket_messages": pd.DataFrame(
            {
                "message_id": ["M1", "M2"],
                "ticket_id": ["T1", "T2"],
                "sent_at": ["2024-01-05T10:00:00Z", "2024-01-06T08:40:00Z"],
                "author": ["customer", "customer"],
                "body": ["How do I add a user?", "We were charged twice."],
            }
        ),
        "surveys": pd.DataFrame(
            {
                "account_id": ["A2"],
                "answered_at": ["2024-02-01T10:00:00Z"],
                "kind": ["nps"],
                "score": ["4"],
                "comment": ["Too slow"],
            }
        ),
        "account_events": pd.DataFrame(
            {"account_id": ["A2"], "at": ["2024-01-06T10:00:00Z"], "kind": ["billing_dispute"], "value": [""]}
        ),
        "churn": pd.DataFrame({"account_id": ["A1"], "churned_at": ["2024-03-01T00:00:00Z"]}),
    }


def write_tables(tables: dict[str, pd.DataFrame], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    return folder


@pytest.fixture
def tiny() -> dict[str, pd.DataFrame]:
    return tiny_tables()


@pytest.fixture(scope="session")
def simulated(tmp_path_factory) -> Path:
    """A mid-sized simulated base (3,000 accounts x 730 days), shared by the integration tests."""
    from simulation.config import SimulationConfig
    from simulation.simulate import simulate

    out = tmp_path_factory.mktemp("sim") / "base"
    simulate(SimulationConfig(accounts=3000, days=730, seed=7), out)
    return out


def tracking_uri(database: Path) -> str:
    """The sqlite URI of an MLflow database at `database` whose tables exist: a copy of an empty
    one this run's installed MLflow made once (`shared_folder`), since making MLflow's tables is a
    chain of schema migrations (3 to 6 s on a 2-core machine) that every fresh database would pay."""
    import shutil

    if not database.exists():
        database.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_empty_tracking_database(), database)
    return f"sqlite:///{database}"


def _empty_tracking_database() -> Path:
    import mlflow

    from text.encoder import make_once

    target = _SHARED[0] / "empty-mlflow.db"

    def make() -> None:
        scratch = target.with_name(f".{target.name}.{os.getpid()}")
        scratch.unlink(missing_ok=True)
        mlflow.MlflowClient(f"sqlite:///{scratch}").search_experiments()  # creates and migrates the tables
        scratch.replace(target)

    make_once(target, make)
    return target


def build_features(data: str, out: str, *options: str) -> None:
    """`churn features --no-text` on tables the test wrote, with the test's other options."""
    from pipelines.cli import main

    assert main(["features", "--data", data, "--out", out, "--no-text", "--json", *options]) == 0


def _environment_variables(root: Path, tokens: str) -> dict[str, str]:
    return {
        "CHURN_MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "CHURN_STORE_URL": f"sqlite:///{root / 'store.db'}",
        "CHURN_SCORES_DIR": str(root / "scores"),
        "CHURN_API_TOKENS": tokens,
        "CHURN_CONFIG_DIR": str(root / "config"),
        "CHURN_DATA_DIR": str(root / "data"),
    }


@contextlib.contextmanager
def _environment(env: dict[str, str]):
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def _build_champion(root: Path) -> None:
    """Simulate, build the panel, train and register a champion, score: what every copy starts from."""
    import yaml

    from models import registry
    from models.curve import CurveParams, fit_curve
    from pipelines.cli import main
    from pipelines.features import read_snapshots
    from pipelines.models import feature_names
    from simulation.config import SimulationConfig
    from simulation.simulate import simulate

    simulate(SimulationConfig(accounts=400, days=450, seed=21), root / "data")
    (root / "config").mkdir()
    (root / "config" / "escalation.yaml").write_text(
        yaml.safe_dump(
            {
                "alerts": {
                    "destinations": {"hook": {"kind": "webhook", "url": "http://127.0.0.1:9/hook"}},
                    "default": ["hook"],
                }
            }
        )
    )
    env = _environment_variables(root, "template")
    with _environment(env):
        build_features(str(root / "data"), str(root / "f"), "--every", "30d")
        panel = read_snapshots(root / "f")
        model = fit_curve(
            panel,
            feature_names(panel),
            CurveParams(n_estimators=150, learning_rate=0.08, min_child_samples=40, num_threads=1),
        )
        registry.connect(env["CHURN_MLFLOW_TRACKING_URI"])
        logged = registry.log_training(
            model,
            panel=panel,
            params={},
            metrics={"backtest.lightgbm.roc_auc_90d": 0.8},
            tables={},
            documents={},
            figures={},
            tags={"features_dir": str(root / "f")},
        )
        registry.move_champion(logged["version"], decision={"forced": True})
        assert main(["score", "--data", str(root / "data"), "--out", str(root / "scores"), "--no-text", "--json"]) == 0


def _relocate(template: Path, root: Path) -> None:
    """A copy of the template that knows itself as `root`: the MLflow database's paths (artifact
    locations, the features_dir tag) and the JSON outputs' are rewritten, so nothing a test writes
    reaches the template or another test's copy."""
    import shutil
    import sqlite3

    shutil.copytree(template, root, dirs_exist_ok=True)
    old, new = str(template), str(root)
    with contextlib.closing(sqlite3.connect(root / "mlflow.db")) as connection, connection:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for column in [
                row[1]
                for row in connection.execute(f'PRAGMA table_info("{table}")')
                if "CHAR" in row[2].upper() or "TEXT" in row[2].upper()
            ]:
                connection.execute(
                    f'UPDATE "{table}" SET "{column}" = REPLACE("{column}", ?, ?) WHERE instr("{column}", ?) > 0',
                    (old, new, old),
                )
    for path in root.rglob("*.json"):
        text = path.read_text()
        if old in text:
            path.write_text(text.replace(old, new))


def _champion_template() -> Path:
    """The champion base every `champion_environment` copies: built once per run by the first
    worker to need it (the others wait on the lock), rebuilt if a build was cut short."""
    import shutil

    from text.encoder import make_once

    folder = _SHARED[0] / "champion"

    def build() -> None:
        shutil.rmtree(folder / "base", ignore_errors=True)
        _build_champion(folder / "base")
        (folder / "built").touch()

    make_once(folder / "built", build)
    return folder / "base"


@contextlib.contextmanager
def champion_environment(root: Path, tokens: str = "test-token"):
    """A small simulated base with a champion in MLflow, a scored snapshot, a policy with an alert
    destination and a store, all under `root`, with the CHURN_* variables pointing at them.
    Built once per run and copied into `root` for each caller."""
    from pipelines.features import read_snapshots

    _relocate(_champion_template(), root)
    env = _environment_variables(root, tokens)
    with _environment(env):
        yield {"root": root, "env": env, "features": read_snapshots(root / "f")}


class StubSentimentModel:
    """A tiny, deterministic stand-in for text.sentiment.SentimentModel (the same interface:
    `key`, `predict`, `embedder` with its similarity thresholds), for unit tests of the text
    features without the encoder. Label by word lists: a message with a word of NEGATIVE is
    negative (p = 0.8), else one with a word of POSITIVE positive, else neutral; so its score
    (P(positive) - P(negative)) is -0.7, 0.7 or 0. Embedding: a hashed bag of words, normalised,
    so the same words give the same vector (cosine 1) and texts sharing no word are orthogonal (but
    for hash collisions)."""

    NEGATIVE = frozenset({"charged", "cancel", "broken", "fails", "angry"})
    POSITIVE = frozenset({"thanks", "great"})
    DIMENSION = 256
    key = "stub-sentiment"
    rephrase_similarity = 0.9
    repeat_similarity = 0.9

    @property
    def embedder(self) -> StubSentimentModel:
        return self

    @staticmethod
    def words(text: str) -> list[str]:
        import re

        return re.findall(r"[a-z']+", text.lower())

    def predict(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        import zlib

        probabilities = np.zeros((len(texts), 3))
        embeddings = np.zeros((len(texts), self.DIMENSION), dtype=np.float32)
        for i, text in enumerate(texts):
            words = set(self.words(text))
            label = 0 if words & self.NEGATIVE else 2 if words & self.POSITIVE else 1
            probabilities[i] = 0.1
            probabilities[i, label] = 0.8
            for word in words:
                embeddings[i, zlib.crc32(word.encode()) % self.DIMENSION] += 1.0
            embeddings[i] /= max(float(np.linalg.norm(embeddings[i])), 1e-12)
        return probabilities, embeddings


@pytest.fixture
def stub_text_model() -> StubSentimentModel:
    return StubSentimentModel()


def run_notebook(path: Path) -> list[dict]:
    """Execute a notebook top to bottom in a fresh kernel (from the repository root, with this
    process's environment: its CHURN_* settings) and return every code cell's outputs."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    root = Path(__file__).resolve().parents[1]
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(root)}}).execute()
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
