"""What the API does, without BentoML: the champion model, the latest snapshot indexed in memory,
the sentiment model, the escalation policy and the operational store, and one method per endpoint.
The BentoML service (serving/service.py) is a thin shell around this, so the logic is tested and
benchmarked in-process as well as over HTTP.

Everything that depends on the model (the model, its version, the encoded snapshot, every stored
account's precomputed answer) is one immutable `ModelState`. A new champion is loaded and its
state built off the request path (`refresh`, called by serving/hot_swap.py), then swapped in with
one assignment; each request reads `self.state` once, so it answers from the old model or the new
one entirely, never a mix, and every answer names the version it came from.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core import clock
from core.errors import ChurnError
from core.settings import Settings
from core.vocabulary import HORIZONS
from escalation.decision import AccountFacts, Decision, RiskView, TicketSignals, decide
from serving import schemas

TOP_REASONS = 3
#: the horizon whose risk the top reasons explain (what CS reads first)
REASONS_HORIZON = 90
FACT_COLUMNS = ("account_name", "csm_owner")


class NotFound(ChurnError):
    """An account the snapshot does not hold (HTTP 404)."""


@dataclass(frozen=True)
class ModelState:
    """What one model version answers, built whole before it is served and never changed after
    (only `references`, a cache of the stored base's reference per horizon, fills on first use)."""

    #: models.curve.RiskCurveModel, or models.linear.LinearCurveModel (a promoted logistic baseline: the
    #: same interface); not imported here: nothing heavy at import time
    model: Any
    version: str
    metrics: dict
    #: the snapshot encoded for this model
    X: np.ndarray
    #: curves and top reasons of every stored account (positions as in ServingRuntime.position)
    stored: tuple[np.ndarray, list]
    #: every stored account's whole answer: its score, and the risk and facts a ticket decides on
    answers: list
    references: dict
    #: when it was ready to serve, and how long loading it and making its answers took
    loaded_at: str
    load_seconds: float


@dataclass
class _Update:
    """A ticket update between its account lookup and its decision (ServingRuntime.assess_tickets)."""

    request: schemas.AssessTicketRequest
    score: schemas.AccountScore
    risk: RiskView
    facts: AccountFacts
    timeline: list[tuple[dt.datetime, str, str]]
    bodies: list[str]
    customer: np.ndarray
    customer_bodies: list[str]


@dataclass
class _Decided:
    update: _Update
    signals: TicketSignals
    decision: Decision
    package: dict | None
    now: dt.datetime


class ServingRuntime:
    def __init__(self, settings: Settings, *, text: bool = True, text_threads: int | None = None):
        from core.config import load_config
        from escalation.store import Store
        from features.registry import feature_specs
        from models import registry

        registry.connect(settings.mlflow_tracking_uri)
        self.model_uri = settings.model_uri
        #: the alias the served URI follows (champion), polled by `refresh`; None for a fixed version or path
        self.alias = registry.alias_of(self.model_uri)
        started = time.perf_counter()
        model, version, metrics = self._load(registry.alias_version(self.alias) if self.alias else None)
        folder = settings.scores_dir or Path(settings.data_dir) / "scores"
        path = Path(folder) / "features.parquet"
        if not path.is_file():
            raise ChurnError(f"CHURN_SCORES_DIR {folder}: no features.parquet; run `churn score --out {folder}` first")
        frame = pd.read_parquet(path)
        self.frame = frame.drop_duplicates("account_id", keep="last").reset_index(drop=True)
        self.position = {a: i for i, a in enumerate(self.frame["account_id"].astype(str))}
        self.records = self.frame.to_dict("records")
        self.snapshot = str(pd.Timestamp(self.frame["cutoff"].max()).date()) if len(self.frame) else None
        self.average_arr = (
            float(self.frame["arr_current"].mean()) if "arr_current" in self.frame and len(self.frame) else None
        )
        self.specs = feature_specs()
        self._lock = threading.Lock()
        config = load_config(settings.config_dir)
        self.policy = config.escalation
        #: the text signals' thresholds (features.yaml `signals:`), unset ones the encoder's own
        self.signals = config.features.signals
        #: the served model's state: replaced whole by `refresh`, read once per request
        self.state = self._build_state(model, version, metrics, started)
        self.store = Store(settings.store_url, self.policy)
        self.settings = settings
        clock.set_offset(settings.clock_offset_seconds)  # the last demo's clock (serving/launch.py)
        self._text = text
        self._text_threads = text_threads
        self._sentiment = None
        self.cache = None
        if text:  # load and warm the text models now: the first ticket must not wait for them
            from features.text.sentiment import score_texts
            from text.loading import open_cache

            # every ticket update re-sends the ticket's earlier messages: only new sentences go through the encoder
            self.cache = open_cache(settings)
            score_texts(["warming up the sentiment model."], self.sentiment_model())

    # -- the model and its swap -------------------------------------------------------------------
    def _load(self, version: str | None) -> tuple[Any, str, dict]:
        """The model, its version and its run's metrics. Behind an alias, the version is resolved
        first and loaded by number, so the version named is the one loaded even if the alias moves
        meanwhile."""
        from models import registry

        uri = registry.version_uri(version) if version is not None else self.model_uri
        try:
            model = registry.load_curve(uri, check_requirements=False)  # serving/launch.py check() did
        except Exception as exc:  # noqa: BLE001 - MLflow raises several types; the operator needs the URI and the fix
            raise ChurnError(
                f"CHURN_MODEL_URI {self.model_uri}: could not load {uri} ({exc}); train and promote a model first "
                "(`churn train`, `churn promote`)"
            ) from None
        described = registry.describe(uri)
        return model, described["version"] if described else uri, described["metrics"] if described else {}

    def _build_state(self, model: Any, version: str, metrics: dict, started: float, threads: int = 0) -> ModelState:
        """Curves, reasons and whole answers of every stored account under `model`, once: the
        snapshot is fixed for the life of the server and support systems ask about the same accounts
        on every ticket update, so a lookup by id is a read. The stored accounts are the base the
        points are measured from (computed on this pass: it has every stored account's curve and
        contributions). `threads`: LightGBM's (0: every core; a swap while serving takes one)."""
        X = model.encode(self.frame)
        references: dict = {}
        stored = (
            self._curves_and_reasons(model, X, self.records, references, threads)
            if len(X)
            else (np.zeros((0, len(HORIZONS))), [])
        )
        answers = [
            self._account_score(a, values, curve, top, self.snapshot, version)
            for a, values, curve, top in zip(self.position, self.records, stored[0], stored[1], strict=True)
        ]
        return ModelState(
            model,
            version,
            metrics,
            X,
            stored,
            answers,
            references,
            dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),  # when it loaded: the wall clock, as the logs
            round(time.perf_counter() - started, 3),
        )

    def refresh(self) -> str | None:
        """Serve the version now behind the alias if it changed: load it and build its state here
        (the caller's thread, off the request path), then swap it in with one assignment. Returns
        the new version, or None when there was nothing to do; raises ChurnError when the new
        version cannot be loaded, and the old state keeps serving."""
        from models import registry

        if self.alias is None:
            return None
        version = registry.alias_version(self.alias)
        if version is None or version == self.state.version:
            return None
        started = time.perf_counter()
        model, version, metrics = self._load(version)
        # one thread: the requests being served meanwhile keep the other core
        self.state = self._build_state(model, version, metrics, started, threads=1)
        return version

    # what callers read before the state existed: always the state being served
    model = property(lambda self: self.state.model)
    model_version = property(lambda self: self.state.version)
    metrics = property(lambda self: self.state.metrics)
    X = property(lambda self: self.state.X)
    _stored = property(lambda self: self.state.stored)
    _answers = property(lambda self: self.state.answers)

    # -- helpers ---------------------------------------------------------------------------------
    def _lookup(self, account_id: str) -> int:
        i = self.position.get(account_id)
        if i is None:
            raise NotFound(
                f"account_id {account_id!r}: not in the snapshot of {self.snapshot}; give its features or check the id"
            )
        return i

    def _row(self, query: schemas.AccountQuery, state: ModelState) -> tuple[np.ndarray, dict, str | None]:
        if query.features is not None:
            return state.model.row(query.features), dict(query.features), None
        i = self._lookup(query.account_id)
        return state.X[i : i + 1], self.records[i], self.snapshot

    def _facts(self, account_id: str, values: dict) -> AccountFacts:
        from escalation.signals import account_facts

        return account_facts(
            account_id,
            values,
            self.policy,
            average_arr=self.average_arr,
            csm_owner=values.get("csm_owner"),
            name=values.get("account_name"),
        )

    def _curves_and_reasons(
        self, model: Any, X: np.ndarray, values: list[dict], references: dict, threads: int | None = None
    ) -> tuple[np.ndarray, list[dict]]:
        """One LightGBM call for the curves and one for the contributions of all rows; the points are
        measured against the stored base (against these rows when nothing is stored)."""
        from models.reasons import Reference, top_reasons

        if threads is None:
            threads = 1 if len(X) < 16 else 0  # one account: one thread is fastest; a batch: every core
        curves = model.curve_matrix(X, num_threads=threads)
        contrib = model.contributions_matrix(X, REASONS_HORIZON, num_threads=threads)[:, :-1]
        risk = curves[:, HORIZONS.index(REASONS_HORIZON)]
        reference = references.get(REASONS_HORIZON)
        if reference is None:
            stored = values is self.records
            reference = Reference.of(
                REASONS_HORIZON,
                risk,
                contrib,
                self.frame if stored else pd.DataFrame(values),
                model.features,
                self.specs,
            )
            if stored:
                references[REASONS_HORIZON] = reference
        return curves, top_reasons(contrib, risk, model.features, values, self.specs, reference, TOP_REASONS)

    def _account_score(
        self,
        account_id: str,
        values: dict,
        curve: np.ndarray,
        top: dict,
        snapshot: str | None,
        version: str | None = None,
    ) -> tuple[schemas.AccountScore, RiskView, AccountFacts]:
        """One account's score from its curve and reasons, by model `version` (default: the served
        one). The tier is the policy's band for the risk alone, which `decide` works out without the
        time (`now` only dates a decision and its follow-up): a stored account's tier holds for the
        life of its model."""
        version = self.state.version if version is None else version
        risk = RiskView({h: float(curve[k]) for k, h in enumerate(HORIZONS)}, tuple(top["raising"]), version)
        facts = self._facts(account_id, values)
        tier = decide(facts, risk, None, self.policy, clock.now()).band
        score = schemas.AccountScore(
            account_id=account_id,
            curve=schemas.Curve(**{f"p_{h}d": float(curve[k]) for k, h in enumerate(HORIZONS)}),
            tier=tier,
            top_reasons=[schemas.Reason(**_reason(r)) for r in top["raising"]],
            context=[schemas.Reason(**_reason(r)) for r in top["context"]],
            base_rate=float(top["base_rate"]),
            rest_points=top["rest_points"],
            reasons_horizon_days=REASONS_HORIZON,
            snapshot=snapshot,
            model_version=version,
        )
        return score, risk, facts

    def reference(self, horizon_days: int, state: ModelState | None = None):
        """The stored base's reference for a horizon (base rate, mean contributions, typical values)
        under a model state (default: the served one), once per state."""
        from models.reasons import Reference

        state = self.state if state is None else state
        with self._lock:
            if horizon_days not in state.references:
                curves = state.model.curve_matrix(state.X)
                contrib = state.model.contributions_matrix(state.X, horizon_days)[:, :-1]
                k = HORIZONS.index(horizon_days)
                state.references[horizon_days] = Reference.of(
                    horizon_days, curves[:, k], contrib, self.frame, state.model.features, self.specs
                )
            return state.references[horizon_days]

    def _score_many(self, queries: list[schemas.AccountQuery]) -> list[schemas.AccountScore]:
        """Stored accounts asked by id are their precomputed answers; accounts given with their
        features are scored together, in one call per model output, all under one model state."""
        state = self.state
        answers = state.answers
        out: list = [answers[self._lookup(q.account_id)][0] if q.features is None else None for q in queries]
        live = [i for i, q in enumerate(queries) if q.features is not None]
        if live:
            rows = [self._row(queries[i], state) for i in live]
            curves, tops = self._curves_and_reasons(
                state.model, np.vstack([x for x, _, _ in rows]), [values for _, values, _ in rows], state.references
            )
            for i, (_, values, snapshot), curve, top in zip(live, rows, curves, tops, strict=True):
                out[i] = self._account_score(queries[i].account_id, values, curve, top, snapshot, state.version)[0]
        return out

    # -- endpoints -------------------------------------------------------------------------------
    def score(self, accounts: list[schemas.AccountQuery]) -> list[schemas.AccountScore]:
        return self._score_many(accounts) if accounts else []

    def explain(self, request: schemas.ExplainRequest) -> schemas.ExplainResponse:
        from models.reasons import account_reasons, points

        state = self.state
        model = state.model
        x, values, _ = self._row(schemas.AccountQuery(account_id=request.account_id), state)
        k = HORIZONS.index(request.horizon_days)
        curve = state.stored[0][self.position[request.account_id]]
        contrib = model.contributions_matrix(x, request.horizon_days, num_threads=1)[:, :-1]
        reference = self.reference(request.horizon_days, state)
        pts, rest = points(contrib, curve[k : k + 1], reference)
        found = account_reasons(
            contrib[0], pts[0], float(rest[0]), model.features, values, self.specs, reference, n=len(model.features)
        )
        families: dict[str, float] = {}
        for name, c in zip(model.features, contrib[0], strict=True):
            family = self.specs[name].family if name in self.specs else "other"
            families[family] = families.get(family, 0.0) + float(c)

        def reason(key: str) -> list[schemas.Reason]:
            return [schemas.Reason(**_reason(r)) for r in found[key]]

        return schemas.ExplainResponse(
            account_id=request.account_id,
            horizon_days=request.horizon_days,
            probability=float(curve[k]),
            raising=reason("raising"),
            lowering=reason("lowering"),
            context=reason("context"),
            base_rate=found["base_rate"],
            rest_points=found["rest_points"],
            by_family={f: round(v, 6) for f, v in sorted(families.items(), key=lambda kv: -abs(kv[1]))},
            points_by_family=found["points_by_family"],
            model_version=state.version,
        )

    def sentiment_model(self):
        with self._lock:
            if self._sentiment is None:
                from text.loading import load_sentiment_model

                # the same model as batch work (a message's sentiment here and in the features agree)
                self._sentiment = load_sentiment_model(self.settings, threads=self._text_threads)
            return self._sentiment

    def rephrase_similarity(self) -> float:
        """The cosine above which a customer message asks an earlier one again, in the sentiment
        model's embedding space (with text off there are no embeddings: never)."""
        if not self._text:
            return 1.0
        threshold = self.signals.within(self.sentiment_model().embedder).rephrase_similarity
        return float(threshold) if threshold is not None else 1.0

    def assess_ticket(self, request: schemas.AssessTicketRequest) -> schemas.AssessTicketResponse:
        [result] = self.assess_tickets([request])
        if isinstance(result, BaseException):
            raise result
        return result

    def assess_tickets(
        self, requests: list[schemas.AssessTicketRequest]
    ) -> list[schemas.AssessTicketResponse | Exception]:
        """Ticket updates that arrived together (serving/batching.py), in order: the new messages of all
        of them go through the sentence encoder in one pass (four messages cost about what two cost
        one at a time), then each update is decided and recorded on its own. An update that fails
        (an unknown account, say) gets its exception in its place; the others are not affected."""
        from features.text.sentiment import sentiment_arrays

        out: list = [None] * len(requests)
        ready: list[tuple[int, _Update]] = []
        answers = self.state.answers  # one model for the whole batch
        for k, request in enumerate(requests):
            try:
                ready.append((k, self._prepare(request, answers)))
            except Exception as exc:  # noqa: BLE001 - this update's answer; the batch goes on
                out[k] = exc
        bodies = [body for _, update in ready for body in update.customer_bodies]
        probabilities, embeddings = np.zeros((0, 3)), np.zeros((0, 0), dtype=np.float32)
        if bodies and self._text:
            probabilities, embeddings = sentiment_arrays(bodies, self.sentiment_model(), self.cache)
        start, decided = 0, {}
        for k, update in ready:
            n = len(update.customer_bodies) if self._text else 0
            try:
                decided[k] = self._decide(update, probabilities[start : start + n], embeddings[start : start + n])
            except Exception as exc:  # noqa: BLE001
                out[k] = exc
            start += n
        # the updates that do not escalate (most) are written in one transaction; each escalation on its own
        quiet = [k for k, d in decided.items() if not d.decision.escalate]
        try:
            stored = dict(
                zip(
                    quiet,
                    self.store.record_all([(decided[k].decision, None, decided[k].now) for k in quiet]),
                    strict=True,
                )
            )
        except Exception as exc:  # noqa: BLE001 - the store failed: every one of them hears it
            stored = dict.fromkeys(quiet, exc)
        for k, d in decided.items():
            try:
                recorded = stored[k] if k in stored else self.store.record(d.decision, d.package, d.now)
                out[k] = recorded if isinstance(recorded, Exception) else self._answer(d, recorded)
            except Exception as exc:  # noqa: BLE001
                out[k] = exc
        return out

    def _prepare(self, request: schemas.AssessTicketRequest, answers: list) -> _Update:
        score, risk, facts = answers[self._lookup(request.account_id)]
        # a handful of messages: lists and numpy, not pandas (whose per-call overhead would be most of the request)
        timeline = sorted(
            (
                (m.sent_at if m.sent_at.tzinfo else m.sent_at.replace(tzinfo=dt.UTC), m.author, m.body)
                for m in request.ticket.messages
            ),
            key=lambda m: m[0],
        )
        bodies = [body for _, _, body in timeline]
        customer = np.array([author == "customer" for _, author, _ in timeline], dtype=bool)
        return _Update(
            request, score, risk, facts, timeline, bodies, customer, [bodies[i] for i in np.flatnonzero(customer)]
        )

    def _decide(self, update: _Update, probabilities: np.ndarray, emb: np.ndarray) -> _Decided:
        """Signals, decision and (when it escalates) handoff package of one update, its sentiment given."""
        import dataclasses

        from escalation.handoff import build_handoff
        from escalation.signals import ticket_signals
        from features.text.sentiment import labels_of

        ticket, timeline, bodies, customer = update.request.ticket, update.timeline, update.bodies, update.customer
        scores = np.full(len(timeline), np.nan)
        labels = ["neutral"] * len(timeline)
        embeddings = np.zeros((len(timeline), emb.shape[1] if len(emb) else 1), dtype=np.float32)
        if len(probabilities):
            theirs = np.flatnonzero(customer)
            scores[theirs] = probabilities[:, 2] - probabilities[:, 0]
            for i, label in zip(theirs, labels_of(probabilities), strict=True):
                labels[i] = label
            embeddings[customer] = emb
        signals, rephrase = ticket_signals(
            bodies,
            customer,
            ticket_id=ticket.ticket_id,
            category=ticket.category,
            priority=ticket.priority,
            bot_confidence=ticket.bot_confidence,
            scores=scores,
            labels=labels,
            embeddings=embeddings,
            rephrase_similarity=self.rephrase_similarity(),
        )
        # the customer's answer to the bot's offer of a human comes with the ticket, not from its messages
        signals = dataclasses.replace(signals, escalation_offer_accepted=ticket.escalation_offer_accepted)
        now = clock.now()
        facts = update.facts
        decision = decide(facts, update.risk, signals, self.policy, now)
        package = None
        if decision.escalate:
            messages = pd.DataFrame(
                {
                    "sent_at": pd.to_datetime([t for t, _, _ in timeline], utc=True),
                    "author": [a for _, a, _ in timeline],
                    "body": bodies,
                    "rephrase": rephrase,
                }
            )
            package = build_handoff(
                decision, facts, update.risk, signals, messages, now, ticket_subject=ticket.subject
            ).to_dict()
        return _Decided(update, signals, decision, package, now)

    def _answer(self, decided: _Decided, recorded) -> schemas.AssessTicketResponse:
        update, signals, decision, package = decided.update, decided.signals, decided.decision, decided.package
        request, ticket = update.request, update.request.ticket
        escalation_id = recorded.escalation_id if decision.escalate else None
        out_signals = schemas.TicketSignalsOut(
            sentiment=signals.sentiment,
            sentiment_change=signals.drift,
            negative_messages=signals.negative_messages,
            customer_messages=signals.customer_messages,
            critical_moments=list(signals.critical),
            times_asked=signals.asks,
            incidents=[k for k in ("security", "privacy", "fraud") if getattr(signals, k)],
            frustrated=decision.frustrated,
        )
        out_decision = schemas.DecisionOut(
            escalate=decision.escalate,
            band=decision.band,
            queue=decision.queue,
            priority=decision.priority,
            owner=decision.owner,
            response_window_minutes=decision.response_window_minutes,
            follow_up_due=decision.follow_up_due,
            bot_action=decision.bot_action,
            held_out=decision.held_out,
            rules=[schemas.RuleOut(rule=r.rule, detail=r.detail, inputs=_jsonable(r.inputs)) for r in decision.rules],
            policy_version=decision.policy_version,
            model_version=decision.model_version,
        )
        return schemas.AssessTicketResponse(
            account_id=request.account_id,
            ticket_id=ticket.ticket_id,
            signals=out_signals,
            risk=update.score,
            decision=out_decision,
            escalation_id=escalation_id,
            handoff=package,
            model_version=update.score.model_version,
        )

    def feedback(self, request: schemas.FeedbackRequest) -> schemas.FeedbackResponse:
        feedback_id = self.store.add_feedback(request.escalation_id, request.rating, request.comment, request.outcome)
        return schemas.FeedbackResponse(feedback_id=feedback_id, escalation_id=request.escalation_id)

    def info(self) -> schemas.ModelInfo:
        state = self.state
        return schemas.ModelInfo(
            model_uri=self.model_uri,
            model_version=state.version,
            formulation=state.model.formulation,
            features=len(state.model.features),
            trained_through=state.model.info.get("trained_through") or None,
            snapshot=self.snapshot,
            accounts=len(self.frame),
            # the served model's own backtest rows (a promoted logistic baseline's are backtest.logistic.*)
            backtest={k: v for k, v in state.metrics.items() if k.startswith(f"backtest.{state.model.kind}.")},
            loaded_at=state.loaded_at,
            load_seconds=state.load_seconds,
            policy_version=self.policy.version,
        )


def _reason(r: dict) -> dict:
    value = r.get("value")
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        value = None
    return {
        "feature": r["feature"],
        "family": r["family"],
        "role": r["role"],
        "sentence": r["sentence"],
        "value": value,
        "contribution": float(r["contribution"]),
        "points": float(r["points"]),
        "effect": r["effect"],
    }


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
