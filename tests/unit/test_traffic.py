"""The API's request deadline (serving/traffic.py): a 504 when no response starts in time, and no
timer left behind by a request that ended (BentoML's own middleware leaves one per request)."""

from __future__ import annotations

import asyncio
import gc
import json
import time

import pytest

from serving.traffic import RequestTimeout


async def _call(app, timeout: float) -> list[dict]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await RequestTimeout(app, timeout)({"type": "http", "method": "POST", "path": "/x", "headers": []}, receive, send)
    return sent


async def _ok(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _live_timers() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, asyncio.TimerHandle) and not o.cancelled())


def test_a_request_that_ends_leaves_no_timer_behind():
    async def many() -> int:
        for _ in range(300):
            sent = await _call(_ok, timeout=30)
            assert sent[0]["status"] == 200 and sent[1]["body"] == b"ok"
        return _live_timers()

    assert asyncio.run(many()) < 5  # BentoML's TimeoutMiddleware: 300 timers, each holding its request for 30 s


def test_no_response_in_time_is_a_504():
    async def slow(scope, receive, send) -> None:
        await asyncio.sleep(5)
        await _ok(scope, receive, send)

    t0 = time.perf_counter()
    sent = asyncio.run(_call(slow, timeout=0.05))
    assert time.perf_counter() - t0 < 2
    assert sent[0]["status"] == 504
    assert "0.05 seconds" in json.loads(sent[1]["body"])["error"]


def test_an_app_that_fails_before_responding_fails_at_once():
    async def broken(scope, receive, send) -> None:
        raise RuntimeError("boom")

    t0 = time.perf_counter()
    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(_call(broken, timeout=30))
    assert time.perf_counter() - t0 < 2  # not after the 30 s deadline


def test_the_service_uses_it():
    from serving.server import ChurnService

    app = ChurnService.to_asgi()
    assert any(m.cls is RequestTimeout for m in app.user_middleware)


def test_importing_the_endpoints_changes_nothing_in_bentoml():
    """serving/service.py is the endpoints alone: BentoML is set up only by serving/server.py, the module it serves,
    or when the earlier target `serving.service:ChurnService` is asked for."""
    import subprocess
    import sys

    probe = (
        "import serving.service; from bentoml._internal.server.http import traffic; "
        "print(traffic.TimeoutMiddleware.__module__, 'ChurnService' in vars(serving.service)); "
        "from serving.service import ChurnService; from serving.server import ChurnService as served; "
        "print(ChurnService is served, traffic.TimeoutMiddleware.__module__ == 'serving.traffic')"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["bentoml._internal.server.http.traffic", "False", "True", "True"]
