"""The scoring API's endpoints: a thin class around serving/runtime.py. serving/server.py makes it
the BentoML service `bentoml serve` runs (its options, auth, request deadline); importing this
module changes nothing in BentoML, so tests and tools can import the class alone.

Endpoints (POST, JSON): /score (batchable), /assess_ticket, /explain, /feedback, /model; the
escalation lifecycle: /escalations, /escalation, /acknowledge, /resolve, /follow_ups,
/follow_up_done (the documents `churn escalations|follow-ups ... --json` prints); BentoML
adds /livez, /readyz and /metrics. Every route but those three needs `Authorization: Bearer
<token>` with a token from CHURN_API_TOKENS. An unknown account or escalation is a 404 naming it;
input that breaks the schema is a 400 naming the field. A new champion is swapped in without a
restart (serving/hot_swap.py).
"""

from __future__ import annotations

import gc
import logging
from typing import Annotated

import bentoml
from bentoml.exceptions import InvalidArgument, NotFound
from pydantic import Field

from core.errors import InputError, describe_validation
from core.vocabulary import HORIZONS
from escalation.store import UnknownEscalation
from serving import schemas
from serving.batching import MicroBatcher
from serving.runtime import NotFound as UnknownAccount

log = logging.getLogger("churn.serving")


_PLATFORM_ERRORS = (UnknownAccount, InputError)


def _http_error(exc: UnknownAccount | InputError) -> Exception:
    """Platform errors as HTTP errors: unknown account or escalation 404, bad input (an illegal status change too) 400."""
    return NotFound(str(exc)) if isinstance(exc, UnknownAccount | UnknownEscalation) else InvalidArgument(str(exc))


def _mapped(call):
    try:
        return call()
    except _PLATFORM_ERRORS as exc:
        raise _http_error(exc) from None


_BATCH_SIZES = None


def _batch_sizes():
    """The histogram of ticket-update batch sizes on /metrics (`churn_ticket_batch_size`), made once
    per process, in the worker: BentoML sets up Prometheus' multiprocess mode before __init__ runs."""
    global _BATCH_SIZES
    if _BATCH_SIZES is None:
        from prometheus_client import Histogram

        _BATCH_SIZES = Histogram(
            "churn_ticket_batch_size",
            "Ticket updates decided together in one batch (one encoder pass for their new messages)",
            buckets=(1, 2, 3, 4, 6, 8),
        )
    return _BATCH_SIZES


class ChurnAPI:
    """The endpoints; serving/server.py `configure()`s them into the `ChurnService` BentoML serves."""

    def __init__(self) -> None:
        from core.settings import load_settings
        from serving.runtime import ServingRuntime

        # one worker per core: one thread each for the sentence encoder, or the workers fight over
        # the cores (docs/benchmarks.md measures concurrent ticket updates both ways)
        self.runtime = ServingRuntime(load_settings(), text_threads=1)
        # ticket updates that arrive together share one pass of the sentence encoder (serving/batching.py)
        self.tickets = MicroBatcher(self.runtime.assess_tickets, max_size=8, observe=_batch_sizes().observe)
        # The model, the snapshot's records and the libraries are half a million objects that live as
        # long as the worker; a full garbage collection walked them all, a stall every request waiting
        # on the worker felt. Frozen, they are left out of every collection.
        gc.collect()
        gc.freeze()
        log.info(
            "serving %s (version %s), %d accounts as of %s",
            self.runtime.model_uri,
            self.runtime.model_version,
            len(self.runtime.frame),
            self.runtime.snapshot,
        )
        from serving.hot_swap import ModelWatcher

        # a new champion is loaded and its answers made on the watcher's thread; the new state is frozen like the first
        self.watcher = ModelWatcher(self.runtime, self.runtime.settings.model_poll_seconds, on_swap=gc.freeze).start()
        self.relay = self._start_relay()

    def _start_relay(self):
        """The outbox relay on a thread of this worker (escalation/relay.py): every worker of every
        replica runs one, the store's lease lets one at a time poll, the row claims keep any two off
        one alert. CHURN_RELAY_INTERVAL_SECONDS=0 leaves sending to `churn alerts relay`."""
        from escalation.relay import Relay

        interval = self.runtime.settings.relay_interval_seconds
        if not interval:
            return None
        relay = Relay(self.runtime.store, self.runtime.policy)
        relay.start(interval)
        return relay

    @bentoml.on_shutdown
    def stop_watcher(self) -> None:
        if getattr(self, "watcher", None) is not None:
            self.watcher.stop()

    @bentoml.on_shutdown
    def stop_relay(self) -> None:
        """Stop the relay between two sends: what it claimed goes back to the outbox, the lease is
        given up, so the next worker or replica sends it at once."""
        if getattr(self, "relay", None) is not None:
            self.relay.stop(timeout=self.runtime.policy.alerts.timeout_seconds + 1)

    # max_latency_ms bounds the queueing wait before BentoML answers 503; a 1,000-account request
    # takes about a second, so the bound is generous and the batch can hold the largest request
    @bentoml.api(batchable=True, batch_dim=0, max_batch_size=schemas.MAX_ACCOUNTS, max_latency_ms=10_000)
    def score(
        self, accounts: Annotated[list[schemas.AccountQuery], Field(min_length=1, max_length=schemas.MAX_ACCOUNTS)]
    ) -> list[schemas.AccountScore]:
        """Risk curve, tier and top reasons per account (by id from the latest snapshot, or with features given)."""
        return _mapped(lambda: self.runtime.score(accounts))

    @bentoml.api
    async def assess_ticket(self, account_id: str, ticket: schemas.Ticket) -> schemas.AssessTicketResponse:
        """A ticket update: live text signals, risk, the escalation decision and, when it escalates, the handoff package."""
        try:
            result = await self.tickets.submit(schemas.AssessTicketRequest(account_id=account_id, ticket=ticket))
        except _PLATFORM_ERRORS as exc:
            raise _http_error(exc) from None
        if result.escalation_id is not None and self.relay is not None:
            self.relay.wake()  # its alerts go out now, not at the next interval
        return result

    @bentoml.api
    def explain(self, account_id: str, horizon_days: int = 90) -> schemas.ExplainResponse:
        """Every reason raising and lowering one account's risk at a horizon, and the total per feature family."""
        if horizon_days not in HORIZONS:
            raise InvalidArgument(f"horizon_days {horizon_days}: expected one of {', '.join(map(str, HORIZONS))}")
        return _mapped(
            lambda: self.runtime.explain(schemas.ExplainRequest(account_id=account_id, horizon_days=horizon_days))
        )

    @bentoml.api
    def feedback(
        self, escalation_id: int, rating: int, comment: str | None = None, outcome: str = "unknown"
    ) -> schemas.FeedbackResponse:
        """CS rates a handoff (1-5) and records the outcome (saved, churned, unknown)."""
        from pydantic import ValidationError

        try:
            request = schemas.FeedbackRequest(
                escalation_id=escalation_id, rating=rating, comment=comment, outcome=outcome
            )
        except ValidationError as exc:
            raise InvalidArgument(describe_validation(exc)) from None
        return _mapped(lambda: self.runtime.feedback(request))

    @bentoml.api
    def model(self) -> schemas.ModelInfo:
        """The served model: version, training window, backtest metrics; and the snapshot and policy versions."""
        return self.runtime.info()

    # -- the escalation lifecycle: the documents `churn escalations ... --json` prints (serving/lifecycle.py)
    @bentoml.api
    def escalations(
        self, queue: str | None = None, owner: str | None = None, status: str | None = None, overdue: bool = False
    ) -> dict:
        """Escalations by queue, owner and status (default: open and acknowledged), most severe first.

        `overdue`: only open ones past their response window.
        """
        from serving import lifecycle

        return _mapped(
            lambda: lifecycle.list_escalations(
                self.runtime.store, queue=queue, owner=owner, status=status, overdue=overdue
            )
        )

    @bentoml.api
    def escalation(self, escalation_id: int) -> dict:
        """One escalation: its state, handoff package, follow-ups and audit trail."""
        from serving import lifecycle

        return _mapped(lambda: lifecycle.show_escalation(self.runtime.store, escalation_id))

    @bentoml.api
    def acknowledge(self, escalation_id: int, by: str, note: str | None = None) -> dict:
        """Acknowledge an open escalation (recorded with who and when): it stops counting as overdue."""
        from serving import lifecycle

        return _mapped(lambda: lifecycle.acknowledge(self.runtime.store, escalation_id, by, note))

    @bentoml.api
    def resolve(self, escalation_id: int, outcome: str, by: str, note: str | None = None) -> dict:
        """Resolve an open or acknowledged escalation with its outcome (saved, churned, not_at_risk); closes its follow-ups."""
        from serving import lifecycle

        return _mapped(lambda: lifecycle.resolve(self.runtime.store, escalation_id, outcome, by, note))

    @bentoml.api
    def follow_ups(self, due_by: str | None = None) -> dict:
        """Pending follow-ups of active escalations, oldest due first; only those due at or before `due_by` (ISO 8601) when given."""
        from serving import lifecycle

        return _mapped(lambda: lifecycle.follow_ups(self.runtime.store, due_by))

    @bentoml.api
    def follow_up_done(self, escalation_id: int, by: str) -> dict:
        """Mark the escalation's pending follow-up done by `by`."""
        from serving import lifecycle

        return _mapped(lambda: lifecycle.follow_up_done(self.runtime.store, escalation_id, by))


def __getattr__(name: str):
    # `bentoml serve serving.service:ChurnService`, the target of earlier releases, keeps working:
    # the configured service is built on first request for it (serving/server.py), not at import
    if name == "ChurnService":
        from serving.server import ChurnService

        return ChurnService
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
