"""The workspace's web application (Starlette + Jinja2): routes, sign-in, sessions, CSRF, roles.

`create_app(settings, runtime, store)` is the application for tests and tools; serving/server.py
mounts `mountable(...)` into the BentoML service at PATH (/app), which takes the worker's own
ServingRuntime (its model, snapshot and store) when the worker starts. Either way nothing is read
or opened before the application starts (its lifespan) or is first asked for a page.

Routes (paths under the mount; `url(name, **params)` in templates builds them, the rest of the
params going to the query string):

    GET       /               queue       a CSM's open escalations and follow-ups (a lead's: everyone's)
    GET, POST /login          login       sign in (the form carries a pre-session CSRF token)
    POST      /logout         logout
    GET       /accounts/{account_id}        account
    GET       /book?segment=&owner=&horizon=90   book (CS leads and admins)
    GET       /search?q=      search
    GET       /report         report      the leadership report file, or how to make one
    POST      /escalations/{escalation_id}/acknowledge   acknowledge   (note)
    POST      /escalations/{escalation_id}/resolve       resolve       (outcome, note)
    POST      /escalations/{escalation_id}/feedback      feedback      (rating, comment, outcome)
    POST      /follow-ups/{escalation_id}/done           follow_up_done
    GET       /static/{path}  static

Every POST carries the session's CSRF token (`csrf_token`) or is refused with 403 before anything
is read or written; a viewer's POST is refused with 403 too. A POST that changes something goes
through the function the API's endpoint calls (serving/lifecycle.py; the store's add_feedback as
serving/runtime.py's feedback), then redirects (303) to `next` with a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from core.errors import InputError
from core.settings import Settings
from core.vocabulary import HORIZONS, RESOLUTION_OUTCOMES
from serving.auth import WORKSPACE_PATH
from serving.workspace.auth import (
    User,
    Users,
    authenticate,
    new_token,
    same_token,
    session_secret,
    stamp,
)

log = logging.getLogger("churn.workspace")

#: where the workspace lives in the service (serving/server.py mounts it there)
PATH = WORKSPACE_PATH
HERE = Path(__file__).resolve().parent
COOKIE = "churn_workspace"
#: a failed sign-in waits this long before its answer (an online guesser's pace, not a user's)
FAILED_SIGN_IN_DELAY = 0.5
#: the largest form the workspace accepts (a note or comment of 5,000 characters fits many times)
MAX_FORM_BYTES = 64 * 1024
MAX_NOTE = 5000
#: escalations and follow-ups a queue page lists (the most urgent); a lead narrows the rest with the filters
QUEUE_LIMIT = 200
ROLE_LABELS = {"viewer": "viewer", "csm": "CSM", "cs_lead": "CS lead", "admin": "admin"}
RESOLUTION_LABELS = {
    "saved": "saved: the customer stays",
    "churned": "churned: the customer left",
    "not_at_risk": "not at risk: a false alarm",
}
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
    account data (serving/workspace/data.py, built on first use)."""

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
        """The account page's, book view's and search's data (serving/workspace/data.py)."""
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


class _Once:
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


def create_app(settings: Settings, runtime: Any = None, store: Any = None) -> Starlette:
    """The workspace for `settings`, answering from `runtime` (a serving.runtime.ServingRuntime; None:
    no model) and `store` (default: the runtime's, else CHURN_STORE_URL's). Its routes are relative
    to where it is mounted (PATH in the service); `standalone` serves it there on its own."""
    return _application(_Once(lambda: Workspace(settings, runtime, store)))


def mountable(runtime: Callable[[], Any]) -> Starlette:
    """The workspace serving/server.py mounts: `runtime()` gives the worker's ServingRuntime once the
    worker has built it (BentoML starts a mounted application after the service's instance)."""

    def make() -> Workspace:
        served = runtime()
        return Workspace(served.settings, served, served.store)

    return _application(_Once(make))


def standalone(settings: Settings, runtime: Any = None, store: Any = None) -> Starlette:
    """The workspace alone at PATH, as in the service (tests, a look without the model server)."""
    inner = create_app(settings, runtime, store)
    return Starlette(
        routes=[Route("/", lambda request: RedirectResponse(PATH + "/", 303)), Mount(PATH, app=inner)],
        lifespan=lambda app: inner.router.lifespan_context(inner),
    )


def _application(workspace: _Once) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        # made before the first request, off the event loop: the first page must not wait for it
        made = await run_in_threadpool(workspace)
        try:
            await run_in_threadpool(lambda: made.data)
        except Exception:  # noqa: BLE001 - the API in this worker must serve on; those pages try again and say why
            log.exception(
                "workspace: the account data could not be built; the account, book and search pages will retry"
            )
        yield

    routes = [
        Route("/", _page(_queue), name="queue"),
        Route("/login", _login, methods=["GET", "POST"], name="login"),
        Route("/logout", _logout, methods=["POST"], name="logout"),
        Route("/accounts/{account_id}", _page(_account), name="account"),
        Route("/book", _page(_book, lead=True), name="book"),
        Route("/search", _page(_search), name="search"),
        Route("/report", _page(_report), name="report"),
        Route(
            "/escalations/{escalation_id:int}/acknowledge", _action(_acknowledge), methods=["POST"], name="acknowledge"
        ),
        Route("/escalations/{escalation_id:int}/resolve", _action(_resolve), methods=["POST"], name="resolve"),
        Route("/escalations/{escalation_id:int}/feedback", _action(_feedback), methods=["POST"], name="feedback"),
        Route(
            "/follow-ups/{escalation_id:int}/done", _action(_follow_up_done), methods=["POST"], name="follow_up_done"
        ),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(_SecurityHeaders), Middleware(_Sessions, workspace=workspace)],
        lifespan=lifespan,
    )
    app.state.workspace = workspace
    return app


# -- middleware -----------------------------------------------------------------------------------


class _SecurityHeaders:
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


class _Sessions:
    """Starlette's signed-cookie sessions (itsdangerous), made at the first request: the key comes
    from the workspace (CHURN_WORKSPACE_SECRET or DATA_DIR/workspace_secret), the cookie's path is
    where the workspace is mounted. HttpOnly and SameSite=Lax always; Secure with
    CHURN_WORKSPACE_SECURE_COOKIES."""

    def __init__(self, app: Any, workspace: _Once):
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


def _workspace(request: Request) -> Workspace:
    return request.app.state.workspace()


def _signed_in(request: Request) -> User | None:
    """The session's user, if the session is theirs still: within its lifetime, the user not
    removed, their password not changed since (its stamp)."""
    session = request.session
    username = session.get("user")
    if not username:
        return None
    workspace = _workspace(request)
    hours = workspace.settings.workspace_session_hours
    user = workspace.users.get(username)
    fresh = time.time() - float(session.get("since", 0)) < hours * 3600
    if user is None or not fresh or not same_token(stamp(user.password_hash), session.get("stamp")):
        session.clear()
        return None
    return user


def _csrf(request: Request) -> str:
    """The session's CSRF token, made on first need (a visitor's pre-session token on the sign-in page)."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = new_token()
    return token


def _flash(request: Request, kind: str, text: str) -> None:
    request.session["flash"] = [*request.session.get("flash", []), {"kind": kind, "text": text}]


def _url(request: Request, name: str, **params: Any) -> str:
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
    def url(context: Any, name: str, /, **params: Any) -> str:
        return _url(context["request"], name, **params)

    templates.env.globals["url"] = url
    templates.env.globals["role_labels"] = ROLE_LABELS
    return templates


_TEMPLATES: list[Jinja2Templates] = []  # made on first use, once per process


def _render(request: Request, name: str, context: dict, status: int = 200, user: User | None = None) -> Response:
    if not _TEMPLATES:
        _TEMPLATES.append(_templates())
    user = user or getattr(request.state, "user", None)
    common = {
        "request": request,
        "user": None if user is None else user.public(),
        "csrf_token": _csrf(request),
        "can_act": bool(user and user.can_act),
        "is_lead": bool(user and user.is_lead),
        "flashes": request.session.pop("flash", []),
        "resolution_labels": RESOLUTION_LABELS,
        "feedback_labels": FEEDBACK_LABELS,
        "here": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
    }
    return _TEMPLATES[0].TemplateResponse(request, name, {**common, **context}, status_code=status)


def _refuse(request: Request, status: int, title: str, message: str, user: User | None = None) -> Response:
    return _render(request, "error.html", {"title": title, "message": message, "status": status}, status, user)


def _next(request: Request, value: object) -> str:
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
    return _url(request, "queue")


# -- pages ----------------------------------------------------------------------------------------

Page = Callable[[Request, User], Awaitable[Response]]


def _page(handler: Page, *, lead: bool = False) -> Callable[[Request], Awaitable[Response]]:
    """A GET page: a visitor not signed in goes to the sign-in page (and comes back after); a page
    for leads refuses other roles with 403."""

    async def endpoint(request: Request) -> Response:
        user = await run_in_threadpool(_signed_in, request)
        if user is None:
            back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(_url(request, "login", next=back), 303)
        request.state.user = user
        if lead and not user.is_lead:
            return _refuse(
                request,
                403,
                "For CS leads",
                f"The book view is for CS leads and admins; you are signed in as a {ROLE_LABELS[user.role]}.",
            )
        return await handler(request, user)

    return endpoint


async def _login(request: Request) -> Response:
    if request.method == "GET":
        target = _next(request, request.query_params.get("next"))
        if await run_in_threadpool(_signed_in, request) is not None:
            return RedirectResponse(target, 303)
        return _render(request, "login.html", {"next": target, "error": None, "username": ""})
    form = await _checked_form(request)  # the pre-session token the sign-in page gave
    if isinstance(form, Response):
        return form
    target = _next(request, form.get("next"))
    username, password = str(form.get("username") or "").strip()[:64], str(form.get("password") or "")
    user = await run_in_threadpool(authenticate, _workspace(request).users, username, password)
    if user is None:
        log.warning(
            "workspace: failed sign-in for %r from %s", username, request.client.host if request.client else "?"
        )
        await asyncio.sleep(FAILED_SIGN_IN_DELAY)
        # one message whatever was wrong: it must not tell whether the username exists
        return _render(
            request, "login.html", {"next": target, "error": "Wrong username or password.", "username": username}
        )
    # a new session (and CSRF token) at sign-in: one fixed before it is worthless after
    request.session.clear()
    request.session.update(
        {"user": user.username, "stamp": stamp(user.password_hash), "since": time.time(), "csrf": new_token()}
    )
    log.info("workspace: %s (%s) signed in", user.username, user.role)
    return RedirectResponse(target, 303)


def _refuse_forgery(request: Request) -> Response:
    return _refuse(
        request,
        403,
        "Refused: the form was not the workspace's",
        "This form came without the workspace's security token, or with an old one (a page left open across a "
        "sign-in, or a form posted from another site). Nothing was changed. Go back, reload the page and try again.",
    )


async def _queue(request: Request, user: User) -> Response:
    owner = request.query_params.get("owner") or None
    queue = request.query_params.get("queue") or None
    page = await run_in_threadpool(queue_page, _workspace(request), user, owner, queue)
    return _render(request, "queue.html", {"page": page, "active": "queue"})


async def _account(request: Request, user: User) -> Response:
    from serving.runtime import NotFound

    account_id = request.path_params["account_id"]
    try:
        page = await run_in_threadpool(lambda: _workspace(request).data.account(account_id))
    except NotFound as exc:
        return _refuse(request, 404, "No such account", str(exc))
    return _render(request, "account.html", {"page": page, "active": "account"})


async def _book(request: Request, user: User) -> Response:
    params = request.query_params
    try:
        horizon = int(params.get("horizon") or 90)
    except ValueError:
        horizon = -1
    if horizon not in HORIZONS:
        return _refuse(
            request,
            400,
            "Unknown horizon",
            f"horizon {params.get('horizon')!r}: expected one of {', '.join(map(str, HORIZONS))} (days)",
        )
    segment, owner = params.get("segment") or None, params.get("owner") or None

    def assemble() -> dict:
        data = _workspace(request).data
        return {
            "page": data.book(segment, owner, horizon),
            "segments": data.segments(),
            "owners": data.owners(),
            "filters": {"segment": segment, "owner": owner, "horizon": horizon},
            "horizons": HORIZONS,
            "active": "book",
        }

    return _render(request, "book.html", await run_in_threadpool(assemble))


async def _search(request: Request, user: User) -> Response:
    query = (request.query_params.get("q") or "").strip()[:200]
    results = await run_in_threadpool(lambda: _workspace(request).data.search(query)) if query else []
    return _render(request, "search.html", {"query": query, "results": results, "active": "search"})


async def _report(request: Request, user: User) -> Response:
    path = _workspace(request).report_path()
    if path is not None and path.is_file():
        return FileResponse(path, media_type="text/html")
    return _render(request, "report_missing.html", {"path": path, "active": "report"}, 404)


# -- actions --------------------------------------------------------------------------------------

Action = Callable[[Workspace, Request, User, FormData], str]


async def _checked_form(request: Request) -> FormData | Response:
    """A POST's form if it carries the session's CSRF token, else the refusal (nothing read or written)."""
    try:
        size = int(request.headers.get("content-length") or 0)
    except ValueError:
        size = MAX_FORM_BYTES + 1
    if size > MAX_FORM_BYTES:
        return _refuse(request, 413, "Too large", f"A form of at most {MAX_FORM_BYTES // 1024} kB is expected.")
    form = await request.form()
    if not same_token(form.get("csrf_token"), request.session.get("csrf")):
        return _refuse_forgery(request)
    return form


async def _logout(request: Request) -> Response:
    form = await _checked_form(request)
    if isinstance(form, Response):
        return form
    request.session.clear()
    _flash(request, "ok", "You are signed out.")
    return RedirectResponse(_url(request, "login"), 303)


def _action(handler: Action) -> Callable[[Request], Awaitable[Response]]:
    """A POST: refused (403, nothing read or written) without the session's CSRF token, without a
    signed-in user, or from a viewer; else `handler` runs (off the event loop) and the browser is
    sent back to `next` (303) with its message, or with the error's."""

    async def endpoint(request: Request) -> Response:
        form = await _checked_form(request)
        if isinstance(form, Response):
            return form
        user = await run_in_threadpool(_signed_in, request)
        if user is None:
            return _refuse(request, 403, "Signed out", "Your session has ended: sign in again, then repeat the change.")
        request.state.user = user
        if not user.can_act:
            return _refuse(
                request,
                403,
                "Read only",
                f"You are signed in as a {ROLE_LABELS[user.role]}: you can read the workspace but not change "
                "anything. Nothing was changed.",
            )
        from escalation.store import UnknownEscalation

        target = _next(request, form.get("next"))
        try:
            message = await run_in_threadpool(handler, _workspace(request), request, user, form)
        except UnknownEscalation as exc:
            return _refuse(request, 404, "No such escalation", str(exc))
        except InputError as exc:
            _flash(request, "error", str(exc))
        else:
            _flash(request, "ok", message)
        return RedirectResponse(target, 303)

    return endpoint


def _note(form: FormData) -> str | None:
    note = str(form.get("note") or "").strip()
    if len(note) > MAX_NOTE:
        raise InputError(f"note: expected at most {MAX_NOTE:,} characters, got {len(note):,}")
    return note or None


def _acknowledge(workspace: Workspace, request: Request, user: User, form: FormData) -> str:
    from serving import lifecycle

    escalation_id = request.path_params["escalation_id"]
    lifecycle.acknowledge(workspace.store, escalation_id, user.name, _note(form))
    return f"Escalation {escalation_id} acknowledged: it no longer counts against its response window."


def _resolve(workspace: Workspace, request: Request, user: User, form: FormData) -> str:
    from serving import lifecycle

    escalation_id = request.path_params["escalation_id"]
    outcome = str(form.get("outcome") or "")
    if outcome not in RESOLUTION_OUTCOMES:
        raise InputError(f"outcome {outcome!r}: expected one of {', '.join(RESOLUTION_OUTCOMES)}")
    lifecycle.resolve(workspace.store, escalation_id, outcome, user.name, _note(form))
    return f"Escalation {escalation_id} resolved: {RESOLUTION_LABELS[outcome]}."


def _follow_up_done(workspace: Workspace, request: Request, user: User, form: FormData) -> str:
    from serving import lifecycle

    escalation_id = request.path_params["escalation_id"]
    lifecycle.follow_up_done(workspace.store, escalation_id, user.name)
    return f"Follow-up of escalation {escalation_id} marked done."


def _feedback(workspace: Workspace, request: Request, user: User, form: FormData) -> str:
    from pydantic import ValidationError

    from core.errors import describe_validation
    from serving.schemas import FeedbackRequest

    escalation_id = request.path_params["escalation_id"]
    try:
        feedback = FeedbackRequest(
            escalation_id=escalation_id,
            rating=form.get("rating") or None,
            comment=str(form.get("comment") or "").strip() or None,
            outcome=form.get("outcome") or "unknown",
        )
    except ValidationError as exc:
        raise InputError(describe_validation(exc, got=True)) from None
    # what the API's /feedback does (serving/runtime.py)
    workspace.store.add_feedback(feedback.escalation_id, feedback.rating, feedback.comment, feedback.outcome)
    return f"Thank you: handoff of escalation {escalation_id} rated {feedback.rating}/5."


# -- the queue ------------------------------------------------------------------------------------


def _span(seconds: float) -> str:
    """A duration as a person says it: 40 min, 3 h 20 min, 2 days 4 h."""
    minutes = int(abs(seconds) // 60)
    if minutes < 60:
        return f"{max(minutes, 1)} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h" + (f" {minutes} min" if minutes and hours < 10 else "")
    days, hours = divmod(hours, 24)
    return f"{days} days" + (f" {hours} h" if hours else "")


def _time(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value)


def _percent(p: float | None) -> str | None:
    return None if p is None else f"{p:.0%}" if p >= 0.01 or p == 0 else "<1%"


def queue_page(
    workspace: Workspace, user: User, owner: str | None, queue: str | None, now: dt.datetime | None = None
) -> dict:
    """The queue for `user`: their active escalations (a lead's: everyone's, or `owner`'s) and their
    pending follow-ups, most urgent first: open ones past their response window, then open ones by
    the time left, then acknowledged ones by their follow-up."""
    from serving import lifecycle

    now = now or dt.datetime.now(dt.UTC)
    mine = None if user.is_lead else user.name
    listed = lifecycle.list_escalations(workspace.store, owner=mine)["escalations"]
    owners = sorted({e["owner"] for e in listed if e["owner"]})
    queues = sorted({e["queue"] for e in listed if e["queue"]})
    if user.is_lead:
        listed = [
            e for e in listed if (owner is None or e["owner"] == owner) and (queue is None or e["queue"] == queue)
        ]
    elif queue is not None:
        listed = [e for e in listed if e["queue"] == queue]
    ids = {e["id"] for e in listed}
    escalations = sorted((_escalation_item(workspace, e, now) for e in listed), key=lambda e: e["urgency"])
    pending = [f for f in lifecycle.follow_ups(workspace.store)["follow_ups"] if f["escalation_id"] in ids]
    follow_ups = [_follow_up_item(workspace, f, now) for f in pending]  # oldest due first, as the store lists them
    return {
        "escalations": escalations[:QUEUE_LIMIT],
        "follow_ups": follow_ups[:QUEUE_LIMIT],
        "total": len(escalations),
        "follow_ups_total": len(follow_ups),
        "limit": QUEUE_LIMIT,
        "overdue": sum(e["overdue"] for e in escalations),
        "follow_ups_due": sum(f["due"] for f in follow_ups),
        "everyone": user.is_lead,
        "owner": owner,
        "queue": queue,
        "owners": owners,
        "queues": queues,
        "now": now.strftime("%Y-%m-%d %H:%M UTC"),
    }


def _escalation_item(workspace: Workspace, row: dict, now: dt.datetime) -> dict:
    respond_by, follow_up = _time(row["respond_by"]), _time(row.get("follow_up_due"))
    facts = workspace.account_facts(row["account_id"])
    if row["status"] == "acknowledged":
        left, late = "acknowledged: no response window running", False
    elif respond_by is None:
        left, late = "no response window", False
    else:
        late = bool(row["overdue"])
        seconds = (respond_by - now).total_seconds()
        left = f"overdue by {_span(seconds)}" if late else f"{_span(seconds)} left to respond"
    rank = 0 if late else 1 if row["status"] == "open" else 2
    clock = respond_by if rank < 2 else follow_up
    return {
        "id": row["id"],
        "account_id": row["account_id"],
        "account_name": facts["name"] or row["account_id"],
        "p_90d": _percent(facts["p_90d"]),
        "top_reason": facts["reason"],
        "band": row["band"],
        "queue": row["queue"],
        "owner": row["owner"],
        "status": row["status"],
        "reason": (row["reason"] or "").replace("_", " "),
        "occurrences": row["occurrences"],
        "opened": f"{_span((now - _time(row['opened_at'])).total_seconds())} ago",
        "respond_by": None if respond_by is None else respond_by.strftime("%Y-%m-%d %H:%M UTC"),
        "time_left": left,
        "overdue": late,
        "follow_up_due": None if follow_up is None else follow_up.strftime("%Y-%m-%d %H:%M UTC"),
        "urgency": (rank, (clock or dt.datetime.max.replace(tzinfo=dt.UTC)).timestamp(), -row["severity"], row["id"]),
    }


def _follow_up_item(workspace: Workspace, row: dict, now: dt.datetime) -> dict:
    due_at = _time(row["due_at"])
    seconds = (due_at - now).total_seconds()
    return {
        "escalation_id": row["escalation_id"],
        "account_id": row["account_id"],
        "account_name": workspace.account_facts(row["account_id"])["name"] or row["account_id"],
        "band": row["band"],
        "queue": row["queue"],
        "owner": row["owner"],
        "due_at": due_at.strftime("%Y-%m-%d %H:%M UTC"),
        "due": seconds <= 0,
        "when": f"due {_span(seconds)} ago" if seconds <= 0 else f"due in {_span(seconds)}",
    }
