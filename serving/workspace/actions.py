"""The workspace's POST forms that change something: acknowledge, resolve, follow-up done and rate a
handoff. Each is refused (403, nothing read or written) without the session's CSRF token, without
a signed-in user, or from a viewer; else it goes through the function the API's endpoint calls
(serving/lifecycle.py; the store's add_feedback as serving/runtime.py's feedback) and sends the
browser back to `next` (303) with a message saying what changed, or what was wrong."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from core.errors import InputError
from core.vocabulary import RESOLUTION_OUTCOMES
from serving.workspace.auth import User
from serving.workspace.format import RESOLUTION_LABELS
from serving.workspace.web import ROLE_LABELS, Workspace, checked_form, flash, next_path, refuse, signed_in, workspace

MAX_NOTE = 5000

Action = Callable[[Workspace, Request, User, FormData], str]


def action_endpoint(handler: Action) -> Callable[[Request], Awaitable[Response]]:
    """A POST form: the guards above, then `handler` (off the event loop), whose message is flashed."""

    async def endpoint(request: Request) -> Response:
        form = await checked_form(request)
        if isinstance(form, Response):
            return form
        user = await run_in_threadpool(signed_in, request)
        if user is None:
            return refuse(request, 403, "Signed out", "Your session has ended: sign in again, then repeat the change.")
        request.state.user = user
        if not user.can_act:
            return refuse(
                request,
                403,
                "Read only",
                f"You are signed in as a {ROLE_LABELS[user.role]}: you can read the workspace but not change "
                "anything. Nothing was changed.",
            )
        from escalation.store import UnknownEscalation

        target = next_path(request, form.get("next"))
        try:
            message = await run_in_threadpool(handler, workspace(request), request, user, form)
        except UnknownEscalation as exc:
            return refuse(request, 404, "No such escalation", str(exc))
        except InputError as exc:
            flash(request, "error", str(exc))
        else:
            flash(request, "ok", message)
        return RedirectResponse(target, 303)

    return endpoint


def note(form: FormData) -> str | None:
    text = str(form.get("note") or "").strip()
    if len(text) > MAX_NOTE:
        raise InputError(f"note: expected at most {MAX_NOTE:,} characters, got {len(text):,}")
    return text or None


def acknowledge(made: Workspace, request: Request, user: User, form: FormData) -> str:
    from serving import lifecycle

    escalation_id = request.path_params["escalation_id"]
    lifecycle.acknowledge(made.store, escalation_id, user.name, note(form))
    return f"Escalation {escalation_id} acknowledged: it no longer counts against its response window."


def resolve(made: Workspace, request: Request, user: User, form: FormData) -> str:
    from serving import lifecycle

    escalation_id = request.path_params["escalation_id"]
    outcome = str(form.get("outcome") or "")
    if outcome not in RESOLUTION_OUTCOMES:
        raise InputError(f"outcome {outcome!r}: expected one of {', '.join(RESOLUTION_OUTCOMES)}")
    lifecycle.resolve(made.store, escalation_id, outcome, user.name, note(form))
    return f"Escalation {escalation_id} resolved: {RESOLUTION_LABELS[outcome]}."


def follow_up_done(made: Workspace, request: Request, user: User, form: FormData) -> str:
    from serving import lifecycle

    escalation_id = request.path_params["escalation_id"]
    lifecycle.follow_up_done(made.store, escalation_id, user.name)
    return f"Follow-up of escalation {escalation_id} marked done."


def feedback(made: Workspace, request: Request, user: User, form: FormData) -> str:
    from pydantic import ValidationError

    from core.errors import describe_validation
    from serving.schemas import FeedbackRequest

    escalation_id = request.path_params["escalation_id"]
    try:
        given = FeedbackRequest(
            escalation_id=escalation_id,
            rating=form.get("rating") or None,
            comment=str(form.get("comment") or "").strip() or None,
            outcome=form.get("outcome") or "unknown",
        )
    except ValidationError as exc:
        raise InputError(describe_validation(exc, got=True)) from None
    # what the API's /feedback does (serving/runtime.py)
    made.store.add_feedback(given.escalation_id, given.rating, given.comment, given.outcome)
    return f"Thank you: handoff of escalation {escalation_id} rated {given.rating}/5."
