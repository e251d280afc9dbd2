"""The bearer-token middleware on its own: where its tokens come from, and what it lets through."""

from __future__ import annotations

import asyncio

from serving.auth import BearerAuth


async def _ok(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def status(auth: BearerAuth, path: str, token: str | None) -> int:
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    asyncio.run(auth({"type": "http", "path": path, "headers": headers}, None, send))
    return sent[0]["status"]


def test_tokens_from_a_function_are_read_once_at_the_first_protected_request(monkeypatch):
    monkeypatch.setenv("CHURN_API_TOKENS", "from-the-environment")
    calls = []

    def worker_tokens() -> list[str]:
        calls.append(1)
        return ["t1", "t2"]

    auth = BearerAuth(_ok, tokens=worker_tokens)
    assert status(auth, "/livez", None) == 200 and not calls  # health needs no token and reads none
    assert status(auth, "/score", "t2") == 200
    assert status(auth, "/score", "from-the-environment") == 401  # the function's tokens, not the environment's
    assert status(auth, "/score", None) == 401
    assert len(calls) == 1


def test_without_tokens_given_the_environment_is_read_and_none_configured_refuses_all(monkeypatch):
    monkeypatch.setenv("CHURN_API_TOKENS", "env-token")
    assert status(BearerAuth(_ok), "/score", "env-token") == 200
    assert status(BearerAuth(_ok, tokens=[]), "/score", "env-token") == 401
