"""Bearer-token authentication as ASGI middleware (BentoML's open-source server has none).

Tokens come from CHURN_API_TOKENS (comma-separated), read once at the first request (the service
passes its worker's settings, so they are read once per worker). Health and metrics paths are
exempt, and so is the CS workspace under WORKSPACE_PATH (serving/workspace: people sign in there
with a password and a session cookie); everything else (the APIs, the OpenAPI document, the UI)
needs `Authorization: Bearer <token>`. Tokens are compared in constant time. With no token
configured every protected request is refused: an API without credentials is never open by accident.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable

EXEMPT = frozenset({"/livez", "/readyz", "/healthz", "/metrics"})
#: where serving/server.py mounts the workspace, which signs its users in itself
WORKSPACE_PATH = "/app"


def exempt(path: str) -> bool:
    """Whether a request path needs no bearer token: health, metrics, the workspace."""
    return path.rstrip("/") in EXEMPT or path == WORKSPACE_PATH or path.startswith(WORKSPACE_PATH + "/")


def _environment_tokens() -> list[str]:
    from core.settings import load_settings

    return load_settings().api_tokens


class BearerAuth:
    """`tokens`: the accepted tokens, or a function that gives them at the first request (the
    service passes its worker's settings, so they are read once per worker); None reads
    CHURN_API_TOKENS then."""

    def __init__(self, app, tokens: list[str] | Callable[[], list[str]] | None = None):
        self.app = app
        if tokens is None:
            self._source = _environment_tokens
        elif callable(tokens):
            self._source = tokens
        else:
            self._source = lambda: tokens
        self._tokens: list[bytes] | None = None

    def tokens(self) -> list[bytes]:
        if self._tokens is None:
            self._tokens = [t.encode() for t in self._source()]
        return self._tokens

    def allowed(self, header: bytes) -> bool:
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not token:
            return False
        found = False
        for known in self.tokens():  # every token compared, in constant time
            found |= hmac.compare_digest(token.strip(), known)
        return found

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or exempt(scope["path"]):
            return await self.app(scope, receive, send)
        header = dict(scope.get("headers") or []).get(b"authorization", b"")
        if self.allowed(header):
            return await self.app(scope, receive, send)
        reason = (
            "no API tokens are configured (set CHURN_API_TOKENS)"
            if not self.tokens()
            else "missing or wrong bearer token: send 'Authorization: Bearer <token>'"
        )
        body = json.dumps({"error": reason}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="churn"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
