"""`bentoml serve` as a child process: started on a free port, waited for until ready, stopped on
exit with its workers (they lead their own sessions). Used by the over-HTTP tests and the serving
benchmark."""

from __future__ import annotations

import contextlib
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from subprocess import DEVNULL, PIPE

from core import processes
from serving.launch import ROOT, serve_command


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(env: dict[str, str], *, timeout: float = 180) -> Iterator[str]:
    """Yield the base URL of a ready server with `env` added to this process's environment."""
    port = free_port()
    server = processes.start(serve_command(port), cwd=ROOT, env={**os.environ, **env}, stdout=DEVNULL, stderr=PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            try:
                if urllib.request.urlopen(f"{base}/readyz", timeout=2).status == 200:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if server.poll() is not None:
                raise RuntimeError(
                    f"bentoml serve exited with {server.returncode}: {server.stderr.read().decode()[-2000:]}"
                )
            if time.time() > deadline:
                raise TimeoutError(f"bentoml serve not ready after {timeout:.0f} s")
            time.sleep(0.5)
        yield base
    finally:
        processes.stop([server], 30)
