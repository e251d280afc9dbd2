"""The scoring API: one BentoML service around serving/runtime.py.

    bentoml serve serving.service:ChurnService --port 3000      (or `churn serve`, `make serve`)

Endpoints (POST, JSON): /score (batchable), /assess_ticket, /explain, /feedback, /model; BentoML
adds /livez, /readyz and /metrics. Every route but those three needs `Authorization: Bearer
<token>` with a token from CHURN_API_TOKENS. An unknown account is a 404 naming it; input that
breaks the schema is a 400 naming the field.
"""

from __future__ import annotations

import gc
import logging
from typing import Annotated

import bentoml
from bentoml.exceptions import InvalidArgument, NotFound
from pydantic import Field

from core.errors import InputError
from serving import schemas
from serving.auth import BearerAuth
from serving.batching import MicroBatcher
from serving.runtime import NotFound as UnknownAccount
from serving.traffic import install as install_request_timeout

log = logging.getLogger("churn.serving")


_PLATFORM_ERRORS = (UnknownAccount, InputError)


def _http_error(exc: UnknownAccount | InputError) -> Exception:
    """Platform errors as HTTP errors: unknown account 404, bad input 400."""
    return NotFound(str(exc)) if isinstance(exc, UnknownAccount) else InvalidArgument(str(exc))


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

        _BATCH_SIZES = Histogram("churn_ticket_batch_size", "Ticket updates decided together in one batch (one encoder pass for their new messages)",
                                 buckets=(1, 2, 3, 4, 6, 8))
    return _BATCH_SIZES


# two worker processes: one per core of the reference machine (8 clients at once: 408 req/s
# against 231 with one worker, same p50 at concurrency 1)
@bentoml.service(name="churn", traffic={"timeout": 30}, workers=2)
class ChurnService:
    def __init__(self) -> None:
        from core.settings import load_settings
        from serving.runtime import ServingRuntime

        # one worker per core: one thread each for the sentence encoder, or the workers fight over
        # the cores (8 concurrent ticket updates: p99 143 ms with the default of a thread per core)
        self.runtime = ServingRuntime(load_settings(), text_threads=1)
        # ticket updates that arrive together share one pass of the sentence encoder (serving/batching.py)
        self.tickets = MicroBatcher(self.runtime.assess_tickets, max_size=8, observe=_batch_sizes().observe)
        # The model, the snapshot's records and the libraries are half a million objects that live as
        # long as the worker; a full garbage collection walked them all (245 ms, a stall every request
        # waiting on the worker felt). Frozen, they are left out of every collection.
        gc.collect()
        gc.freeze()
        log.info("serving %s (version %s), %d accounts as of %s", self.runtime.model_uri, self.runtime.model_version,
                 len(self.runtime.frame), self.runtime.snapshot)

    # max_latency_ms bounds the queueing wait before BentoML answers 503; a 1,000-account request
    # takes about a second, so the bound is generous and the batch can hold the largest request
    @bentoml.api(batchable=True, batch_dim=0, max_batch_size=schemas.MAX_ACCOUNTS, max_latency_ms=10_000)
    def score(self, accounts: Annotated[list[schemas.AccountQuery], Field(min_length=1, max_length=schemas.MAX_ACCOUNTS)]) -> list[schemas.AccountScore]:
        """Risk curve, tier and top reasons per account (by id from the latest snapshot, or with features given)."""
        return _mapped(lambda: self.runtime.score(accounts))

    @bentoml.api
    async def assess_ticket(self, account_id: str, ticket: schemas.Ticket) -> schemas.AssessTicketResponse:
        """A ticket update: live text signals, risk, the escalation decision and, when it escalates, the handoff package."""
        try:
            return await self.tickets.submit(schemas.AssessTicketRequest(account_id=account_id, ticket=ticket))
        except _PLATFORM_ERRORS as exc:
            raise _http_error(exc) from None

    @bentoml.api
    def explain(self, account_id: str, horizon_days: int = 90) -> schemas.ExplainResponse:
        """Every reason raising and lowering one account's risk at a horizon, and the total per feature family."""
        if horizon_days not in (30, 60, 90, 180):
            raise InvalidArgument(f"horizon_days {horizon_days}: expected one of 30, 60, 90, 180")
        return _mapped(lambda: self.runtime.explain(schemas.ExplainRequest(account_id=account_id, horizon_days=horizon_days)))

    @bentoml.api
    def feedback(self, escalation_id: int, rating: int, comment: str | None = None, outcome: str = "unknown") -> schemas.FeedbackResponse:
        """CS rates a handoff (1-5) and records the outcome (saved, churned, unknown)."""
        from pydantic import ValidationError

        try:
            request = schemas.FeedbackRequest(escalation_id=escalation_id, rating=rating, comment=comment, outcome=outcome)
        except ValidationError as exc:
            raise InvalidArgument("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
        return _mapped(lambda: self.runtime.feedback(request))

    @bentoml.api
    def model(self) -> schemas.ModelInfo:
        """The served model: version, training window, backtest metrics; and the snapshot and policy versions."""
        return self.runtime.info()


ChurnService.add_asgi_middleware(BearerAuth)
install_request_timeout()  # BentoML's request timer is never cancelled: see serving/traffic.py

# Every response here is JSON. BentoML works out a response's media type from the output model's
# JSON schema unless the model names it, and for a list output it builds that schema again on
# every request: 13% of a worker's time under load. Naming it saves the work.
for _api in ChurnService.apis.values():
    _api.output_spec.media_type = "application/json"
