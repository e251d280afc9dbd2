"""Alert delivery: the outbox flusher. The payloads themselves are built by `escalation.payloads`
(pure) when the store queues an alert.

Delivery guarantees. `Store.record()` commits an escalation and its outbox rows in one
transaction before anything is sent; `deliver()` runs afterwards, from the outbox only. So an
alert is never lost: a crash before the commit loses the decision whole, a crash after it leaves
the rows pending for the next `deliver()` (a row claimed by a flusher that died is retried when its
lease runs out). An alert can be sent more than once: when the receiver got it but we never saw the
answer (a timeout, a crash before `mark_sent`). Every request therefore carries the same
`Idempotency-Key` header for every attempt of one alert (and the key inside the payload): a
receiver that drops keys it has seen makes delivery exactly-once end to end. Slack's incoming
webhooks do not dedupe, so for Slack the guarantee is at-least-once; the key is shown in the
message's context line so people can tell a repeat, and the attempts (`alerts.max_attempts`,
exponential backoff) are kept few.

The HTTP client is the standard library's (urllib.request): one POST per alert needs no more.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
from collections.abc import Callable

from core import clock
from escalation.policy import EscalationPolicy
from escalation.store import Store, utc

UTC = dt.UTC
#: a send: (url, body, headers, timeout seconds) -> HTTP status; raises on timeouts and connection errors
Send = Callable[[str, bytes, dict, float], int]
#: margin added to a claimed batch's lease, beyond the worst case of every send timing out
LEASE_MARGIN_SECONDS = 60.0


def http_post(url: str, body: bytes, headers: dict, timeout: float) -> int:
    """POST with the standard library; an HTTP error status is returned, a timeout or a
    connection failure raises (the caller counts either as a failed attempt)."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def deliver(
    store: Store,
    policy: EscalationPolicy | None = None,
    now: dt.datetime | None = None,
    *,
    send: Send | None = None,
    batch_size: int = 50,
    stopping: Callable[[], bool] | None = None,
) -> dict[str, int]:
    """Flush the outbox once: send every pending alert due at `now`, a claimed batch at a time.

    2xx marks an alert sent; anything else (an error status, a timeout, a refused connection) is a
    failed attempt, retried after backoff_seconds * 2**(attempts - 1) (at most max_backoff_seconds) until
    `max_attempts`, then marked failed. Returns {sent, retried, failed, pending}, pending being
    what is left in the outbox (due later). Exceptions that are not errors (KeyboardInterrupt,
    SystemExit) propagate: what was sent stays marked, the rest is retried later. `stopping` (the
    relay's shutdown) is asked before each send: once it says yes, the batch's unsent rows are
    handed back at once rather than left leased, so a restart resends them in seconds.
    """
    settings = (policy or store.policy).alerts
    now = utc(now) or clock.now()
    send = send or http_post
    counts = {"sent": 0, "retried": 0, "failed": 0}
    lease = settings.timeout_seconds * (batch_size + 1) + LEASE_MARGIN_SECONDS
    while batch := store.claim_alerts(now, limit=batch_size, lease_seconds=lease):
        # a claimed row is leased or rescheduled past `now`, so this loop ends
        for k, alert in enumerate(batch):
            if stopping is not None and stopping():
                store.release_alerts([a["id"] for a in batch[k:]], now)
                counts["pending"] = store.counts()["alerts_pending"]
                return counts
            body = json.dumps(alert["payload"], sort_keys=True).encode()
            headers = {
                "Content-Type": "application/json",
                "Idempotency-Key": alert["idempotency_key"],
                "User-Agent": "churn-platform-alerts",
            }
            try:
                status = send(alert["url"], body, headers, settings.timeout_seconds)
                error = None if 200 <= status < 300 else f"HTTP {status}"
            except Exception as exc:  # timeouts, refused connections, DNS: one failed attempt each
                error = f"{type(exc).__name__}: {exc}"
            if error is None:
                store.mark_sent(alert["id"], now)
                counts["sent"] += 1
            else:
                outcome = store.mark_attempt_failed(
                    alert["id"],
                    now,
                    error,
                    max_attempts=settings.max_attempts,
                    backoff_seconds=settings.backoff_seconds,
                    max_backoff_seconds=settings.max_backoff_seconds,
                )
                if outcome in counts:
                    counts[outcome] += 1
    counts["pending"] = store.counts()["alerts_pending"]
    return counts


def flush_until_done(
    store: Store,
    policy: EscalationPolicy | None = None,
    start: dt.datetime | None = None,
    *,
    send: Send | None = None,
    max_rounds: int = 100,
) -> dict:
    """Run `deliver()` on a simulated clock, jumping to each next retry, until nothing is pending
    (or `max_rounds`): the whole retry schedule in seconds, for tests and a manual drain.
    Returns the summed counts, the rounds run and the clock at the end."""
    now = utc(start) or clock.now()
    total = {"sent": 0, "retried": 0, "failed": 0, "pending": 0}
    rounds = 0
    while rounds < max_rounds:
        rounds += 1
        counts = deliver(store, policy, now, send=send)
        for key in ("sent", "retried", "failed"):
            total[key] += counts[key]
        total["pending"] = counts["pending"]
        due = store.next_alert_due()
        if not counts["pending"] or due is None:
            break
        now = max(now, due)
    return {**total, "rounds": rounds, "now": now}
