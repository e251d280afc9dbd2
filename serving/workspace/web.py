"""What every route of the workspace stands on: the per-worker `Workspace` (settings, runtime, store,
users, session key, account data), the middleware (security headers, signed-cookie sessions), and
the request helpers: who is signed in, the CSRF token, flash messages, route paths, rendering, the
refusal page, where to go after a form, and the guards every GET page and POST form go through."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount
from starlette.templating import Jinja2Templates

from core.settings import Settings
from serving.auth import WORKSPACE_PATH
from serving.workspace.auth import User, Users, new_token, same_token, session_secret, stamp
from serving.workspace.format import FILTERS, RESOLUTION_LABELS

#: where the workspace lives in the service (serving/server.py mounts it there)
PATH = WORKSPACE_PATH
HERE = Path(__file__).resolve().parent
COOKIE = "churn_workspace"
#: the largest form the workspace accepts (a note or comment of 5,000 characters fits many times)
MAX_FORM_BYTES = 64 * 1024
ROLE_LABELS = {"viewer": "viewer", "csm": "CSM", "cs_lead": "CS lead", "admin": "admin"}
#: the outcome a handoff rating may record, in the rating form's words
FEEDBACK_LABELS = {"saved": "saved", "churned": "churned", "unknown": "not known yet"}
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
        b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


class Workspace:
    """What the routes read, made once per worker: the settings, the served runtime (None: no
    model, account facts from the store only), the store, the users, the session key and the
    account data (serving/workspace/data/, built on first use)."""

    def __init__(self, settings: Settings, runtime: Any = None, store: Any = None):
        self.settings = settings
        self.runtime = runtime
        if store is None and runtime is not None:
            store = runtime.store
        if store is None:
            from escalation.policy import load_policy
            from escalation.store import Store

            store = Store(settings.store_url, load_policy(settings.config_dir))
        self.store = store
        self.users = Users(store, settings.workspace_users)
        self.secret = session_secret(settings.workspace_secret, Path(settings.data_dir))
        self._data: Any = None
        self._lock = threading.Lock()

    @property
    def data(self) -> Any:
        """The account page's, book view's and search's data (serving/workspace/data/)."""
        with self._lock:
            if self._data is None:
                from serving.workspace.data import WorkspaceData

                self._data = WorkspaceData(self.settings, self.runtime, self.store)
            return self._data

    def account_facts(self, account_id: str) -> dict:
        """Name, 90-day risk and top reason of a stored account, from the served model's answers."""
        runtime = self.runtime
        i = None if runtime is None else runtime.position.get(account_id)
        if i is None:
            return {"name": None, "p_90d": None, "reason": None}
        score = runtime.state.answers[i][0]
        top = score.top_reasons[0] if score.top_reasons else None
        return {
            "name": runtime.records[i].get("account_name"),
            "p_90d": score.curve.p_90d,
            "reason": None if top is None else {"sentence": top.sentence, "effect": top.effect},
        }

    def report_path(self) -> Path | None:
        """CHURN_REPORT_FILE, else the report the last `churn demo` recorded (DATA_DIR/last_demo.json)."""
        if self.settings.report_file is not None:
            return Path(self.settings.report_file)
        from serving.launch import DEMO_POINTER

        pointer = Path(self.settings.data_dir) / DEMO_POINTER
        try:
            return Path(json.loads(pointer.read_text())["report"])
        except (OSError, ValueError, KeyError, TypeError):
            return None


class Once:
    """The Workspace, made on the first call (the lifespan's start, or the first request) and kept."""

    def __init__(self, make: Callable[[], Workspace]):
        self._make = make
        self._made: Workspace | None = None
        self._lock = threading.Lock()

    def __call__(self) -> Workspace:
        if self._made is None:
            with self._lock:
                if self._made is None:
                    self._made = self._make()
        return self._made


# -- middleware -----------------------------------------------------------------------------------


class SecurityHeaders:
    """Headers every answer carries: a content security policy (own scripts and styles only, no
    framing), no sniffing, no referrer outside; and pages, which hold customer data, not cached."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        static = scope["path"].startswith(scope.get("root_path", "") + "/static/")

        async def with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                headers += SECURITY_HEADERS
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


class Sessions:
    """Starlette's signed-cookie sessions (itsdangerous), made at the first request: the key comes
    from the workspace (CHURN_WORKSPACE_SECRET or DATA_DIR/workspace_secret), the cookie's path is
    where the workspace is mounted. HttpOnly and SameSite=Lax always; Secure with
    CHURN_WORKSPACE_SECURE_COOKIES."""

    def __init__(self, app: Any, workspace: Once):
        self.app = app
        self.workspace = workspace
        self.sessions: SessionMiddleware | None = None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if self.sessions is None:
            made = await run_in_threadpool(self.workspace)
            self.sessions = SessionMiddleware(
                self.app,
                secret_key=made.secret,
                session_cookie=COOKIE,
                max_age=int(made.settings.workspace_session_hours * 3600),
                path=scope.get("root_path") or "/",
                same_site="lax",
                https_only=made.settings.workspace_secure_cookies,
            )
        await self.sessions(scope, receive, send)


# -- sessions, users, responses -------------------------------------------------------------------


def workspace(request: Request) -> Workspace:
    return request.app.state.workspace()


def signed_in(request: Request) -> User | None:
    """The session's user, if the session is theirs still: within its lifetime, the user not
    removed, their password not changed since (its stamp)."""
    session = request.session
    username = session.get("user")
    if not username:
        return None
    made = workspace(request)
    hours = made.settings.workspace_session_hours
    user = made.users.get(username)
    fresh = time.time() - float(session.get("since", 0)) < hours * 3600
    if user is None or not fresh or not same_token(stamp(user.password_hash), session.get("stamp")):
        session.clear()
        return None
    return user


def csrf(request: Request) -> str:
    """The session's CSRF token, made on first need (a visitor's pre-session token on the sign-in page)."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = new_token()
    return token


def flash(request: Request, kind: str, text: str) -> None:
    request.session["flash"] = [*request.session.get("flash", []), {"kind": kind, "text": text}]


def url(request: Request, name: str, **params: Any) -> str:
    """The path of route `name` where the workspace is mounted; params its path does not take go to
    the query string (empty ones left out)."""
    app = request.app
    route = next((r for r in app.routes if getattr(r, "name", None) == name), None)
    if route is None:
        raise KeyError(f"no workspace route named {name!r}")
    taken = set(getattr(route, "param_convertors", {})) | ({"path"} if isinstance(route, Mount) else set())
    path = app.url_path_for(name, **{k: v for k, v in params.items() if k in taken})
    query = {k: v for k, v in params.items() if k not in taken and v not in (None, "")}
    return request.scope.get("root_path", "") + str(path) + (f"?{urlencode(query)}" if query else "")


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=HERE / "templates")

    @jinja2.pass_context
    def route_url(context: Any, name: str, /, **params: Any) -> str:
        return url(context["request"], name, **params)

    templates.env.globals["url"] = route_url
    templates.env.filters.update(FILTERS)
    templates.env.globals["role_labels"] = ROLE_LABELS
    return templates


_TEMPLATES: list[Jinja2Templates] = []  # made on first use, once per process


def render(request: Request, name: str, context: dict, status: int = 200, user: User | None = None) -> Response:
    """Template `name` with what every page gets (the user, the CSRF token, the role's rights, the
    flash messages, the outcome labels, `here` for a form's way back) and `context`."""
    if not _TEMPLATES:
        _TEMPLATES.append(_templates())
    user = user or getattr(request.state, "user", None)
    common = {
        "request": request,
        "user": None if user is None else user.public(),
        "csrf_token": csrf(request),
        "can_act": bool(user and user.can_act),
        "is_lead": bool(user and user.is_lead),
        "flashes": request.session.pop("flash", []),
        "resolution_labels": RESOLUTION_LABELS,
        "feedback_labels": FEEDBACK_LABELS,
        "here": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
    }
    return _TEMPLATES[0].TemplateResponse(request, name, {**common, **context}, status_code=status)


def refuse(request: Request, status: int, title: str, message: str, user: User | None = None) -> Response:
    return render(request, "error.html", {"title": title, "message": message, "status": status}, status, user)


def refuse_forgery(request: Request) -> Response:
    return refuse(
        request,
        403,
        "Refused: the form was not the workspace's",
        "This form came without the workspace's security token, or with an old one (a page left open across a "
        "sign-in, or a form posted from another site). Nothing was changed. Go back, reload the page and try again.",
    )


def next_path(request: Request, value: object) -> str:
    """Where to go after a form: `next` when it is a path inside the workspace, else the queue (never
    another site: //host and schemes are refused)."""
    root = request.scope.get("root_path", "")
    if (
        isinstance(value, str)
        and (value == root + "/" or value.startswith(root + "/"))
        and not value.startswith("//")
        and "\\" not in value
        and "/.." not in value
        and all(ord(c) > 31 for c in value)
    ):
        return value
    return url(request, "queue")


async def checked_form(request: Request) -> FormData | Response:
    """A POST's form if it carries the session's CSRF token, else the refusal (nothing read or written)."""
    try:
        size = int(request.headers.get("content-length") or 0)
    except ValueError:
        size = MAX_FORM_BYTES + 1
    if size > MAX_FORM_BYTES:
        return refuse(request, 413, "Too large", f"A form of at most {MAX_FORM_BYTES // 1024} kB is expected.")
    form = await request.form()
    if not same_token(form.get("csrf_token"), request.session.get("csrf")):
        return refuse_forgery(request)
    return form


Page = Callable[[Request, User], Awaitable[Response]]


def page_endpoint(handler: Page, *, lead: bool = False) -> Callable[[Request], Awaitable[Response]]:
    """A GET page: a visitor not signed in goes to the sign-in page (and comes back after); a page
    for leads refuses other roles with 403."""

    async def endpoint(request: Request) -> Response:
        user = await run_in_threadpool(signed_in, request)
        if user is None:
            back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(url(request, "login", next=back), 303)
        request.state.user = user
        if lead and not user.is_lead:
            return refuse(
                request,
                403,
                "For CS leads",
                f"The book view is for CS leads and admins; you are signed in as a {ROLE_LABELS[user.role]}.",
            )
        return await handler(request, user)

    return endpoint
