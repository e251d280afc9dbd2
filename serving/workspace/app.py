"""The workspace's web application (Starlette + Jinja2): the application factory, its routes and its
pages. Sessions, CSRF, roles and rendering are in web.py, the POST forms in actions.py, the queue's
data in queue.py, the account page's, book view's and search's in data/.

`create_app(settings, runtime, store)` is the application for tests and tools; serving/server.py
mounts `mountable(...)` into the BentoML service at PATH (/app), which takes the worker's own
ServingRuntime (its model, snapshot and store) when the worker starts. Either way nothing is read
or opened before the application starts (its lifespan) or is first asked for a page.

Routes (paths under the mount; `url(name, **params)` in templates builds them, the rest of the
params going to the query string):

    GET       /               queue       a CSM's open escalations and follow-ups (a lead's: everyone's);
                                          ?owner=&queue= (a lead's filters), ?page=&follow_up_page=
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
is read or written; a viewer's POST is refused with 403 too (actions.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from core.settings import Settings
from core.vocabulary import HORIZONS
from serving.workspace import actions
from serving.workspace.auth import User, authenticate, new_token, stamp
from serving.workspace.queue import queue_page
from serving.workspace.web import (
    HERE,
    PATH,
    Once,
    SecurityHeaders,
    Sessions,
    Workspace,
    checked_form,
    flash,
    next_path,
    page_endpoint,
    refuse,
    render,
    signed_in,
    url,
    workspace,
)

log = logging.getLogger("churn.workspace")

#: a failed sign-in waits this long before its answer (an online guesser's pace, not a user's)
FAILED_SIGN_IN_DELAY = 0.5


def create_app(settings: Settings, runtime: Any = None, store: Any = None) -> Starlette:
    """The workspace for `settings`, answering from `runtime` (a serving.runtime.ServingRuntime; None:
    no model) and `store` (default: the runtime's, else CHURN_STORE_URL's). Its routes are relative
    to where it is mounted (PATH in the service); `standalone` serves it there on its own."""
    return _application(Once(lambda: Workspace(settings, runtime, store)))


def mountable(runtime: Callable[[], Any]) -> Starlette:
    """The workspace serving/server.py mounts: `runtime()` gives the worker's ServingRuntime once the
    worker has built it (BentoML starts a mounted application after the service's instance)."""

    def make() -> Workspace:
        served = runtime()
        return Workspace(served.settings, served, served.store)

    return _application(Once(make))


def standalone(settings: Settings, runtime: Any = None, store: Any = None) -> Starlette:
    """The workspace alone at PATH, as in the service (tests, a look without the model server)."""
    inner = create_app(settings, runtime, store)
    return Starlette(
        routes=[Route("/", lambda request: RedirectResponse(PATH + "/", 303)), Mount(PATH, app=inner)],
        lifespan=lambda app: inner.router.lifespan_context(inner),
    )


def _application(made: Once) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        # made before the first request, off the event loop: the first page must not wait for it
        ready = await run_in_threadpool(made)
        try:
            await run_in_threadpool(lambda: ready.data)
            # as the API does with its model (serving/service.py): the pages' data lives as long as the
            # worker, and full garbage collections walking it stalled whichever request they landed on
            gc.collect()
            gc.freeze()
        except Exception:  # noqa: BLE001 - the API in this worker must serve on; those pages try again and say why
            log.exception(
                "workspace: the account data could not be built; the account, book and search pages will retry"
            )
        yield

    action = actions.action_endpoint
    routes = [
        Route("/", page_endpoint(_queue), name="queue"),
        Route("/login", _login, methods=["GET", "POST"], name="login"),
        Route("/logout", _logout, methods=["POST"], name="logout"),
        Route("/accounts/{account_id}", page_endpoint(_account), name="account"),
        Route("/book", page_endpoint(_book, lead=True), name="book"),
        Route("/search", page_endpoint(_search), name="search"),
        Route("/report", page_endpoint(_report), name="report"),
        Route(
            "/escalations/{escalation_id:int}/acknowledge",
            action(actions.acknowledge),
            methods=["POST"],
            name="acknowledge",
        ),
        Route("/escalations/{escalation_id:int}/resolve", action(actions.resolve), methods=["POST"], name="resolve"),
        Route("/escalations/{escalation_id:int}/feedback", action(actions.feedback), methods=["POST"], name="feedback"),
        Route(
            "/follow-ups/{escalation_id:int}/done",
            action(actions.follow_up_done),
            methods=["POST"],
            name="follow_up_done",
        ),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders), Middleware(Sessions, workspace=made)],
        lifespan=lifespan,
    )
    app.state.workspace = made
    return app


# -- sign-in ----------------------------------------------------------------------------------------


async def _login(request: Request) -> Response:
    if request.method == "GET":
        target = next_path(request, request.query_params.get("next"))
        if await run_in_threadpool(signed_in, request) is not None:
            return RedirectResponse(target, 303)
        return render(request, "login.html", {"next": target, "error": None, "username": ""})
    form = await checked_form(request)  # the pre-session token the sign-in page gave
    if isinstance(form, Response):
        return form
    target = next_path(request, form.get("next"))
    username, password = str(form.get("username") or "").strip()[:64], str(form.get("password") or "")
    user = await run_in_threadpool(authenticate, workspace(request).users, username, password)
    if user is None:
        log.warning(
            "workspace: failed sign-in for %r from %s", username, request.client.host if request.client else "?"
        )
        await asyncio.sleep(FAILED_SIGN_IN_DELAY)
        # one message whatever was wrong: it must not tell whether the username exists
        return render(
            request, "login.html", {"next": target, "error": "Wrong username or password.", "username": username}
        )
    # a new session (and CSRF token) at sign-in: one fixed before it is worthless after
    request.session.clear()
    request.session.update(
        {"user": user.username, "stamp": stamp(user.password_hash), "since": time.time(), "csrf": new_token()}
    )
    log.info("workspace: %s (%s) signed in", user.username, user.role)
    return RedirectResponse(target, 303)


async def _logout(request: Request) -> Response:
    form = await checked_form(request)
    if isinstance(form, Response):
        return form
    request.session.clear()
    flash(request, "ok", "You are signed out.")
    return RedirectResponse(url(request, "login"), 303)


# -- pages ----------------------------------------------------------------------------------------


async def _queue(request: Request, user: User) -> Response:
    params = request.query_params
    owner, queue = params.get("owner") or None, params.get("queue") or None
    page = await run_in_threadpool(
        queue_page, workspace(request), user, owner, queue, params.get("page"), params.get("follow_up_page")
    )
    return render(request, "queue.html", {"page": page, "active": "queue"})


async def _account(request: Request, user: User) -> Response:
    from serving.runtime import NotFound

    account_id = request.path_params["account_id"]
    try:
        page = await run_in_threadpool(lambda: workspace(request).data.account(account_id))
    except NotFound as exc:
        return refuse(request, 404, "No such account", str(exc))
    return render(request, "account.html", {"page": page, "active": "account"})


async def _book(request: Request, user: User) -> Response:
    params = request.query_params
    try:
        horizon = int(params.get("horizon") or 90)
    except ValueError:
        horizon = -1
    if horizon not in HORIZONS:
        return refuse(
            request,
            400,
            "Unknown horizon",
            f"horizon {params.get('horizon')!r}: expected one of {', '.join(map(str, HORIZONS))} (days)",
        )
    segment, owner = params.get("segment") or None, params.get("owner") or None

    def assemble() -> dict:
        data = workspace(request).data
        return {
            "page": data.book(segment, owner, horizon),
            "segments": data.segments(),
            "owners": data.owners(),
            "filters": {"segment": segment, "owner": owner, "horizon": horizon},
            "horizons": HORIZONS,
            "active": "book",
        }

    return render(request, "book.html", await run_in_threadpool(assemble))


async def _search(request: Request, user: User) -> Response:
    query = (request.query_params.get("q") or "").strip()[:200]
    results = await run_in_threadpool(lambda: workspace(request).data.search(query)) if query else []
    return render(request, "search.html", {"query": query, "results": results, "active": "search"})


async def _report(request: Request, user: User) -> Response:
    path = workspace(request).report_path()
    if path is not None and path.is_file():
        return FileResponse(path, media_type="text/html")
    return render(request, "report_missing.html", {"path": path, "active": "report"}, 404)
