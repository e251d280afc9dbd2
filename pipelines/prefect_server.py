"""The local Prefect server the pipeline commands share.

Prefect's temporary (ephemeral) server costs 10-20 s per command and, on a busy CPU, fails the
first run when it does not answer within its 20 s start-up timeout. Instead the first pipeline
command starts one local server in the background (its own session, so a Ctrl-C in the terminal
or a signal to the command leaves it alone), with its SQLite database, log and state under
CHURN_PREFECT_DIR (default ~/.cache/churn-platform/prefect), waits for it as long as a busy machine
needs, and later commands reuse it. It stops itself after CHURN_PREFECT_IDLE_MINUTES without a
request; `churn prefect stop` stops it now. A PREFECT_API_URL the user set (environment or Prefect
profile) always wins: then nothing is started.

Run as `python -m pipelines.prefect_server DIR PORT IDLE_MINUTES`: the server process itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from core import processes
from core.errors import ChurnError
from core.processes import alive as _alive

STATE, LOG, LOCK, DATABASE = "server.json", "server.log", "server.lock", "prefect.db"
#: how long a start may take: long enough for a machine whose cores are busy with other work
START_TIMEOUT_SECONDS = 180


def default_dir() -> Path:
    """The user's cache folder, beside the encoder exports."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "churn-platform" / "prefect"


def server_dir(settings) -> Path:
    return (Path(settings.prefect_dir).expanduser() if settings.prefect_dir else default_dir()).resolve()


def _prefect_version() -> str:
    from importlib.metadata import version

    return version("prefect")


def _read_state(folder: Path) -> dict | None:
    try:
        return json.loads((folder / STATE).read_text())
    except (OSError, ValueError):
        return None


def _ours(state: dict | None, folder: Path) -> bool:
    """The process in the state file is alive and is this folder's server (not a process that got its pid since)."""
    if not state or not _alive(state["pid"]):
        return False
    try:
        command = Path(f"/proc/{state['pid']}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc: trust the state file
    return b"pipelines.prefect_server" in command and str(folder).encode() in command


def _healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def status(folder: Path) -> dict:
    """What runs from `folder`: {"running": bool, "url", "pid", "started_at", "database", "log", ...}."""
    state = _read_state(folder) or {}
    running = _ours(state, folder) and _healthy(state["url"])
    return {
        "running": running,
        "folder": str(folder),
        "database": str(folder / DATABASE),
        "log": str(folder / LOG),
        **state,
    }


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One command at a time starts or stops the server (the others wait, then reuse it)."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _terminate(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM (uvicorn shuts down gracefully), then SIGKILL after `timeout`."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def stop(folder: Path) -> dict | None:
    """Stop the server started from `folder`; the state it had, or None when none ran."""
    with _locked(folder):
        state = _read_state(folder)
        running = _ours(state, folder)
        if running:
            _terminate(state["pid"])
        with contextlib.suppress(FileNotFoundError):
            (folder / STATE).unlink()
        return state if running else None


def ensure(folder: Path, idle_minutes: int, say=lambda line: None, timeout: float = START_TIMEOUT_SECONDS) -> str:
    """The API URL of the local server in `folder`, started first if none runs (or it runs another
    Prefect version)."""
    state = _read_state(folder)
    if state and state.get("prefect") == _prefect_version() and _healthy(state["url"], timeout=1.0):
        return state["url"]  # the common case: no lock, one request
    with _locked(folder):
        state = _read_state(folder)
        if _ours(state, folder):
            if state.get("prefect") == _prefect_version() and _wait(state, timeout, None):
                return state["url"]  # another command had just started it
            _terminate(state["pid"])
        return _start(folder, idle_minutes, say, timeout)


def _wait(state: dict, timeout: float, process: subprocess.Popen | None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _healthy(state["url"]):
            return True
        if (process.poll() is not None) if process is not None else not _alive(state["pid"]):
            return False
        time.sleep(0.2)
    return False


def _start(folder: Path, idle_minutes: int, say, timeout: float) -> str:
    started = time.monotonic()
    say(
        f"starting a local Prefect server for this and later commands (state in {folder}; `churn prefect stop` stops it)"
    )
    for _attempt in range(2):  # a port taken between choosing it and binding it: once more on another
        port = _free_port()
        with open(folder / LOG, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "pipelines.prefect_server", str(folder), str(port), str(idle_minutes)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                cwd=Path(__file__).resolve().parent.parent,
            )
        processes.spare(process.pid)  # it outlives the command: stopping a command leaves it alone
        state = {
            "pid": process.pid,
            "url": f"http://127.0.0.1:{port}/api",
            "port": port,
            "prefect": _prefect_version(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "idle_minutes": idle_minutes,
        }
        (folder / STATE).write_text(json.dumps(state, indent=2) + "\n")
        if _wait(state, timeout, process):
            say(
                f"local Prefect server ready at {state['url'].removesuffix('/api')} in {time.monotonic() - started:.1f}s"
            )
            return state["url"]
        if process.poll() is None:
            break  # running but silent: the deadline passed
    _terminate(process.pid)
    with contextlib.suppress(FileNotFoundError):
        (folder / STATE).unlink()
    tail = " | ".join((folder / LOG).read_text(errors="replace").strip().splitlines()[-3:])
    raise ChurnError(
        f"the local Prefect server did not answer within {timeout:.0f}s (log {folder / LOG}: {tail}); "
        "set PREFECT_API_URL to use another Prefect server"
    )


def _server_env(folder: Path, port: int) -> dict[str, str]:
    """The server's own Prefect settings: its home, database and address under `folder`."""
    return {
        "PREFECT_HOME": str(folder),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{folder / DATABASE}",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }


def _serve(folder: Path, port: int, idle_minutes: int) -> None:
    """The server process: uvicorn with Prefect's app (API, UI and the services, the scheduler among
    them), stopped after `idle_minutes` without a request (0: never)."""
    os.environ.pop("PREFECT_API_URL", None)
    os.environ.update(_server_env(folder, port))
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(
            "prefect.server.api.server:create_app",
            factory=True,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
        )
    )

    def watch() -> None:
        seen, quiet_since = -1, time.monotonic()
        while not server.should_exit:
            time.sleep(30)
            state = server.server_state
            if state.total_requests != seen or state.connections:
                seen, quiet_since = state.total_requests, time.monotonic()
            elif time.monotonic() - quiet_since > idle_minutes * 60:
                print(f"no request for {idle_minutes} minutes: stopping", file=sys.stderr, flush=True)
                server.should_exit = True

    if idle_minutes > 0:
        threading.Thread(target=watch, daemon=True, name="idle-stop").start()
    try:
        server.run()
    finally:
        if (_read_state(folder) or {}).get("pid") == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                (folder / STATE).unlink()


@contextlib.contextmanager
def prefect_api(settings, say=lambda line: None) -> Iterator[str]:
    """Point this process's flows at a Prefect API: the user's (PREFECT_API_URL in the environment or
    the Prefect profile), else the shared local server (started if needed). Flow-run heartbeats are
    off unless the user set their frequency: the engine waits up to a second for the heartbeat
    thread at the end of every flow and subflow, and nothing here watches them."""
    import prefect.context
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        get_current_settings,
        temporary_settings,
    )

    current = get_current_settings()
    url = current.api.url
    if not url:
        url = ensure(server_dir(settings), settings.prefect_idle_minutes, say)
        # for the rest of the process, every thread included (Prefect's log and event workers)
        os.environ["PREFECT_API_URL"] = url
        prefect.context.refresh_global_settings_context()
    updates = (
        {} if "heartbeat_frequency" in current.flows.model_fields_set else {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
    )
    with temporary_settings(updates={PREFECT_API_URL: url, **updates}):
        yield url


if __name__ == "__main__":
    _serve(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
