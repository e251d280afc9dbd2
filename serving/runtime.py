"""What the API does, without BentoML: the champion model, the latest snapshot indexed in memory,
the sentiment model, the escalation policy and the operational store, and one method per endpoint.
The BentoML service (serving/service.py) is a thin shell around this, so the logic is tested and
benchmarked in-process as well as over HTTP.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import ChurnError, InputError
from core.settings import Settings
from escalation.decision import AccountFacts, Decision, RiskView, TicketSignals, decide
from escalation.policy import HORIZONS
from serving import schemas

TOP_REASONS = 3
#: the horizon whose risk the top reasons explain (what CS reads first)
REASONS_HORIZON = 90
FACT_COLUMNS = ("account_name", "csm_owner")


class NotFound(ChurnError):
    """An account the snapshot does not hold (HTTP 404)."""


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
        from escalation.policy import load_policy
        from escalation.store import Store
        from features.registry import feature_specs
        from models import registry

        registry.connect(settings.mlflow_tracking_uri)
        self.model_uri = settings.model_uri
        try:
            self.model = registry.load_curve(self.model_uri)
        except Exception as exc:  # MLflow raises several types; the operator needs the URI and the fix
            raise ChurnError(f"CHURN_MODEL_URI {self.model_uri}: could not load it ({exc}); train and promote a model first "
                             "(`churn train`, `churn promote`)") from None
        described = registry.describe(self.model_uri)
        self.model_version = described["version"] if described else self.model_uri
        self.metrics = described["metrics"] if described else {}
        folder = settings.scores_dir or Path(settings.data_dir) / "scores"
        path = Path(folder) / "features.parquet"
        if not path.is_file():
            raise ChurnError(f"CHURN_SCORES_DIR {folder}: no features.parquet; run `churn score --out {folder}` first")
        frame = pd.read_parquet(path)
        self.frame = frame.drop_duplicates("account_id", keep="last").reset_index(drop=True)
        self.X = self.model.encode(self.frame)
        self.position = {a: i for i, a in enumerate(self.frame["account_id"].astype(str))}
        self.records = self.frame.to_dict("records")
        self.snapshot = str(pd.Timestamp(self.frame["cutoff"].max()).date()) if len(self.frame) else None
        self.average_arr = float(self.frame["arr_current"].mean()) if "arr_current" in self.frame and len(self.frame) else None
        self.specs = feature_specs()
        self._lock = threading.Lock()
        self._references: dict = {}
        self.policy = load_policy(settings.config_dir)
        self._stored = self._precompute()
        self._answers = self._answer_stored()
        self.store = Store(settings.store_url, self.policy)
        self.settings = settings
        self._text = text
        self._text_threads = text_threads
        self._sentiment = None
        self.cache = None
        if text:  # load and warm the text models now: the first ticket must not wait for them
            from features.text.sentiment import score_texts
            from pipelines.text import open_cache

            # every ticket update re-sends the ticket's earlier messages: only new sentences go through the encoder
            self.cache = open_cache(settings)
            score_texts(["warming up the sentiment model."], self.sentiment_model())

    # -- helpers ---------------------------------------------------------------------------------
    def _lookup(self, account_id: str) -> int:
        i = self.position.get(account_id)
        if i is None:
            raise NotFound(f"account_id {account_id!r}: not in the snapshot of {self.snapshot}; give its features or check the id")
        return i

    def _row(self, query: schemas.AccountQuery) -> tuple[np.ndarray, dict, str | None]:
        if query.features is not None:
            return self.model.row(query.features), dict(query.features), None
        i = self._lookup(query.account_id)
        return self.X[i : i + 1], self.records[i], self.snapshot

    def _facts(self, account_id: str, values: dict) -> AccountFacts:
        from escalation.signals import account_facts

        return account_facts(account_id, values, self.policy, average_arr=self.average_arr, csm_owner=values.get("csm_owner"),
                             name=values.get("account_name"))

    def _curves_and_reasons(self, X: np.ndarray, values: list[dict]) -> tuple[np.ndarray, list[dict]]:
        """One LightGBM call for the curves and one for the contributions of all rows; the points are
        measured against the stored base (against these rows when nothing is stored)."""
        from models.reasons import Reference, top_reasons

        threads = 1 if len(X) < 16 else 0  # one account: one thread is fastest; a batch: every core
        curves = self.model.curve_matrix(X, num_threads=threads)
        contrib = self.model.contributions_matrix(X, REASONS_HORIZON, num_threads=threads)[:, :-1]
        risk = curves[:, HORIZONS.index(REASONS_HORIZON)]
        reference = self._references.get(REASONS_HORIZON)
        if reference is None:
            stored = values is self.records
            reference = Reference.of(REASONS_HORIZON, risk, contrib, self.frame if stored else pd.DataFrame(values), self.model.features, self.specs)
            if stored:
                self._references[REASONS_HORIZON] = reference
        return curves, top_reasons(contrib, risk, self.model.features, values, self.specs, reference, TOP_REASONS)

    def _precompute(self) -> tuple[np.ndarray, list]:
        """Curves and top reasons of every stored account, once: the snapshot and the model are fixed
        for the life of the server, and support systems ask about the same accounts on every ticket
        update, so a lookup by id is a read. The stored accounts are the base the points are measured
        from (computed on the first pass: it has every stored account's curve and contributions)."""
        if not len(self.X):
            return np.zeros((0, len(HORIZONS))), []
        return self._curves_and_reasons(self.X, self.records)

    def _answer_stored(self) -> list[tuple[schemas.AccountScore, RiskView, AccountFacts]]:
        """Every stored account's whole answer, once: its score (tier included) and the risk and facts
        a ticket update decides on, so a lookup by id is a read. Nothing in them depends on the
        request; the objects are shared, never changed."""
        return [self._account_score(a, values, curve, top, self.snapshot)
                for a, values, curve, top in zip(self.position, self.records, self._stored[0], self._stored[1], strict=True)]

    def _account_score(self, account_id: str, values: dict, curve: np.ndarray, top: dict,
                       snapshot: str | None) -> tuple[schemas.AccountScore, RiskView, AccountFacts]:
        """One account's score from its curve and reasons. The tier is the policy's band for the risk
        alone, which `decide` works out without the time (`now` only dates a decision and its
        follow-up): a stored account's tier holds for the server's life."""
        risk = RiskView({h: float(curve[k]) for k, h in enumerate(HORIZONS)}, tuple(top["raising"]), self.model_version)
        facts = self._facts(account_id, values)
        tier = decide(facts, risk, None, self.policy, dt.datetime.now(dt.UTC)).band
        score = schemas.AccountScore(account_id=account_id, curve=schemas.Curve(**{f"p_{h}d": float(curve[k]) for k, h in enumerate(HORIZONS)}),
                                     tier=tier, top_reasons=[schemas.Reason(**_reason(r)) for r in top["raising"]],
                                     context=[schemas.Reason(**_reason(r)) for r in top["context"]], base_rate=float(top["base_rate"]),
                                     rest_points=top["rest_points"], reasons_horizon_days=REASONS_HORIZON, snapshot=snapshot,
                                     model_version=self.model_version)
        return score, risk, facts

    def reference(self, horizon_days: int):
        """The stored base's reference for a horizon (base rate, mean contributions, typical values), once."""
        from models.reasons import Reference

        with self._lock:
            if horizon_days not in self._references:
                curves = self.model.curve_matrix(self.X)
                contrib = self.model.contributions_matrix(self.X, horizon_days)[:, :-1]
                k = HORIZONS.index(horizon_days)
                self._references[horizon_days] = Reference.of(horizon_days, curves[:, k], contrib, self.frame, self.model.features, self.specs)
            return self._references[horizon_days]

    def _score_many(self, queries: list[schemas.AccountQuery]) -> list[schemas.AccountScore]:
        """Stored accounts asked by id are their precomputed answers; accounts given with their
        features are scored together, in one call per model output."""
        out: list = [self._answers[self._lookup(q.account_id)][0] if q.features is None else None for q in queries]
        live = [i for i, q in enumerate(queries) if q.features is not None]
        if live:
            rows = [self._row(queries[i]) for i in live]
            curves, tops = self._curves_and_reasons(np.vstack([x for x, _, _ in rows]), [values for _, values, _ in rows])
            for i, (_, values, snapshot), curve, top in zip(live, rows, curves, tops, strict=True):
                out[i] = self._account_score(queries[i].account_id, values, curve, top, snapshot)[0]
        return out

    # -- endpoints -------------------------------------------------------------------------------
    def score(self, accounts: list[schemas.AccountQuery]) -> list[schemas.AccountScore]:
        return self._score_many(accounts) if accounts else []

    def explain(self, request: schemas.ExplainRequest) -> schemas.ExplainResponse:
        from models.reasons import account_reasons, points

        x, values, _ = self._row(schemas.AccountQuery(account_id=request.account_id))
        k = HORIZONS.index(request.horizon_days)
        curve = self._stored[0][self.position[request.account_id]]
        contrib = self.model.contributions_matrix(x, request.horizon_days, num_threads=1)[:, :-1]
        reference = self.reference(request.horizon_days)
        pts, rest = points(contrib, curve[k : k + 1], reference)
        found = account_reasons(contrib[0], pts[0], float(rest[0]), self.model.features, values, self.specs, reference, n=len(self.model.features))
        families: dict[str, float] = {}
        for name, c in zip(self.model.features, contrib[0], strict=True):
            family = self.specs[name].family if name in self.specs else "other"
            families[family] = families.get(family, 0.0) + float(c)

        def reason(key: str) -> list[schemas.Reason]:
            return [schemas.Reason(**_reason(r)) for r in found[key]]

        return schemas.ExplainResponse(account_id=request.account_id, horizon_days=request.horizon_days, probability=float(curve[k]),
                                       raising=reason("raising"), lowering=reason("lowering"), context=reason("context"),
                                       base_rate=found["base_rate"], rest_points=found["rest_points"],
                                       by_family={f: round(v, 6) for f, v in sorted(families.items(), key=lambda kv: -abs(kv[1]))},
                                       points_by_family=found["points_by_family"], model_version=self.model_version)

    def sentiment_model(self):
        with self._lock:
            if self._sentiment is None:
                from pipelines.text import load_sentiment_model

                # the same model as batch work (a message's sentiment here and in the features agree)
                self._sentiment = load_sentiment_model(self.settings, threads=self._text_threads)
            return self._sentiment

    def rephrase_similarity(self) -> float:
        """The cosine above which a customer message asks an earlier one again, in the sentiment
        model's embedding space (with text off there are no embeddings: never)."""
        return self.sentiment_model().embedder.rephrase_similarity if self._text else 1.0

    def assess_ticket(self, request: schemas.AssessTicketRequest) -> schemas.AssessTicketResponse:
        [result] = self.assess_tickets([request])
        if isinstance(result, BaseException):
            raise result
        return result

    def assess_tickets(self, requests: list[schemas.AssessTicketRequest]) -> list[schemas.AssessTicketResponse | Exception]:
        """Ticket updates that arrived together (serving/batching.py), in order: the new messages of all
        of them go through the sentence encoder in one pass (four messages cost about what two cost
        one at a time), then each update is decided and recorded on its own. An update that fails
        (an unknown account, say) gets its exception in its place; the others are not affected."""
        from features.text.sentiment import sentiment_arrays

        out: list = [None] * len(requests)
        ready: list[tuple[int, _Update]] = []
        for k, request in enumerate(requests):
            try:
                ready.append((k, self._prepare(request)))
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
            stored = dict(zip(quiet, self.store.record_all([(decided[k].decision, None, decided[k].now) for k in quiet]), strict=True))
        except Exception as exc:  # noqa: BLE001 - the store failed: every one of them hears it
            stored = dict.fromkeys(quiet, exc)
        for k, d in decided.items():
            try:
                recorded = stored[k] if k in stored else self.store.record(d.decision, d.package, d.now)
                out[k] = recorded if isinstance(recorded, Exception) else self._answer(d, recorded)
            except Exception as exc:  # noqa: BLE001
                out[k] = exc
        return out

    def _prepare(self, request: schemas.AssessTicketRequest) -> _Update:
        score, risk, facts = self._answers[self._lookup(request.account_id)]
        # a handful of messages: lists and numpy, not pandas (whose per-call overhead would be most of the request)
        timeline = sorted(((m.sent_at if m.sent_at.tzinfo else m.sent_at.replace(tzinfo=dt.UTC), m.author, m.body) for m in request.ticket.messages),
                          key=lambda m: m[0])
        bodies = [body for _, _, body in timeline]
        customer = np.array([author == "customer" for _, author, _ in timeline], dtype=bool)
        return _Update(request, score, risk, facts, timeline, bodies, customer, [bodies[i] for i in np.flatnonzero(customer)])

    def _decide(self, update: _Update, probabilities: np.ndarray, emb: np.ndarray) -> _Decided:
        """Signals, decision and (when it escalates) handoff package of one update, its sentiment given."""
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
        signals, rephrase = ticket_signals(bodies, customer, ticket_id=ticket.ticket_id, category=ticket.category, priority=ticket.priority,
                                           bot_confidence=ticket.bot_confidence, scores=scores, labels=labels, embeddings=embeddings,
                                           rephrase_similarity=self.rephrase_similarity())
        now = dt.datetime.now(dt.UTC)
        facts = update.facts
        decision = decide(facts, update.risk, signals, self.policy, now)
        package = None
        if decision.escalate:
            messages = pd.DataFrame({"sent_at": pd.to_datetime([t for t, _, _ in timeline], utc=True), "author": [a for _, a, _ in timeline],
                                     "body": bodies, "rephrase": rephrase})
            package = build_handoff(decision, facts, update.risk, signals, messages, now, ticket_subject=ticket.subject).to_dict()
        return _Decided(update, signals, decision, package, now)

    def _answer(self, decided: _Decided, recorded) -> schemas.AssessTicketResponse:
        update, signals, decision, package = decided.update, decided.signals, decided.decision, decided.package
        request, ticket = update.request, update.request.ticket
        escalation_id = recorded.escalation_id if decision.escalate else None
        out_signals = schemas.TicketSignalsOut(
            sentiment=signals.sentiment, sentiment_change=signals.drift, negative_messages=signals.negative_messages,
            customer_messages=signals.customer_messages, critical_moments=list(signals.critical), times_asked=signals.asks,
            incidents=[k for k in ("security", "privacy", "fraud") if getattr(signals, k)], frustrated=decision.frustrated)
        out_decision = schemas.DecisionOut(
            escalate=decision.escalate, band=decision.band, queue=decision.queue, priority=decision.priority, owner=decision.owner,
            response_window_minutes=decision.response_window_minutes, follow_up_due=decision.follow_up_due, bot_action=decision.bot_action,
            rules=[schemas.RuleOut(rule=r.rule, detail=r.detail, inputs=_jsonable(r.inputs)) for r in decision.rules],
            policy_version=decision.policy_version, model_version=decision.model_version)
        return schemas.AssessTicketResponse(account_id=request.account_id, ticket_id=ticket.ticket_id, signals=out_signals, risk=update.score,
                                            decision=out_decision, escalation_id=escalation_id, handoff=package)

    def feedback(self, request: schemas.FeedbackRequest) -> schemas.FeedbackResponse:
        try:
            feedback_id = self.store.add_feedback(request.escalation_id, request.rating, request.comment, request.outcome)
        except InputError as exc:
            if "no such escalation" in str(exc):
                raise NotFound(str(exc)) from None
            raise
        return schemas.FeedbackResponse(feedback_id=feedback_id, escalation_id=request.escalation_id)

    def info(self) -> schemas.ModelInfo:
        return schemas.ModelInfo(model_uri=self.model_uri, model_version=self.model_version, formulation=self.model.formulation,
                                 features=len(self.model.features), trained_through=self.model.info.get("trained_through") or None,
                                 snapshot=self.snapshot, accounts=len(self.frame),
                                 backtest={k: v for k, v in self.metrics.items() if k.startswith("backtest.lightgbm.")},
                                 policy_version=self.policy.version)


def _reason(r: dict) -> dict:
    value = r.get("value")
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        value = None
    return {"feature": r["feature"], "family": r["family"], "role": r["role"], "sentence": r["sentence"], "value": value,
            "contribution": float(r["contribution"]), "points": float(r["points"]), "effect": r["effect"]}


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
