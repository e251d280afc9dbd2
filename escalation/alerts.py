"""Alert payloads (Slack incoming webhook, generic JSON webhook) and the outbox flusher.

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
from typing import Any

from escalation.policy import EscalationPolicy
from escalation.store import Store, utc

UTC = dt.timezone.utc
#: a send: (url, body, headers, timeout seconds) -> HTTP status; raises on timeouts and connection errors
Send = Callable[[str, bytes, dict, float], int]
#: margin added to a claimed batch's lease, beyond the worst case of every send timing out
LEASE_MARGIN_SECONDS = 60.0
BAND_MARK = {"critical": ":rotating_light:", "high": ":warning:", "watch": ":eyes:"}
SLACK_SECTION_LIMIT = 2900  # Slack rejects a section text over 3000 characters
PAYLOAD_VERSION = 1


def _find(data: Any, *keys: str, depth: int = 3) -> Any:
    """The first non-empty value under any of `keys`, at the top level of a handoff package or a
    few levels down: alerts must not break when the package's layout moves a field."""
    if not isinstance(data, dict) or depth < 0:
        return None
    for key in keys:
        if data.get(key) not in (None, "", [], {}):
            return data[key]
    for value in data.values():
        found = _find(value, *keys, depth=depth - 1)
        if found is not None:
            return found
    return None


def _escape(text: Any) -> str:
    # Slack mrkdwn: these three are control characters (links, mentions)
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _money(value: Any) -> str:
    try:
        return f"${float(value):,.0f}"
    except (TypeError, ValueError):
        return "unknown"


def _facts(escalation: dict, package: dict | None) -> dict:
    """The few facts every alert shows, from the escalation and (when there is one) its package."""
    package = package or {}
    name = _find(package, "account_name", "name")
    window = escalation.get("response_window_minutes") or _find(package, "response_window_minutes")
    return {
        "account": f"{name} ({escalation['account_id']})" if name else str(escalation["account_id"]),
        "band": str(escalation.get("band") or "none"),
        "arr": _find(package, "arr"),
        "reason": escalation.get("detail") or str(escalation.get("reason", "")).replace("_", " "),
        "owner": escalation.get("owner") or "unassigned",
        "window": f"{window} min" if window else "not set",
        "summary": _find(package, "summary") or "",
    }


def slack_payload(escalation: dict, package: dict | None = None, *, idempotency_key: str | None = None) -> dict:
    """A Slack incoming-webhook message: `text` (notifications, clients without blocks) and `blocks`
    with band, account, ARR, reason, owner, response window and the handoff summary."""
    f = _facts(escalation, package)
    band = f["band"].upper()
    mark = BAND_MARK.get(f["band"], "")
    text = f"{mark} {band} churn escalation: {f['account']}: {f['reason']}. Owner {f['owner']}, respond within {f['window']}."
    fields = [("Band", band), ("Account", f["account"]), ("ARR", _money(f["arr"])), ("Reason", f["reason"]),
              ("Owner", f["owner"]), ("Respond within", f["window"])]
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{band} churn escalation: {f['account']}"[:150]}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{label}*\n{_escape(value)}"[:2000]} for label, value in fields]},
    ]
    if f["summary"]:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _escape(f["summary"])[:SLACK_SECTION_LIMIT]}})
    context = [f"escalation #{escalation.get('id')}", f"queue {escalation.get('queue')}",
               f"{escalation.get('occurrences', 1)} occurrence(s)"]
    if escalation.get("follow_up_due"):
        context.append(f"follow-up due {escalation['follow_up_due']}")
    if idempotency_key:
        context.append(f"ref {idempotency_key[:16]}")  # Slack does not dedupe: lets a reader spot a repeat
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _escape(" · ".join(context))}]})
    return {"text": _escape(text), "blocks": blocks}


def webhook_payload(escalation: dict, package: dict | None = None, *, idempotency_key: str | None = None) -> dict:
    """A generic JSON event: the escalation, the headline facts and the whole handoff package."""
    f = _facts(escalation, package)
    return {
        "type": "churn.escalation",
        "version": PAYLOAD_VERSION,
        "idempotency_key": idempotency_key,
        "escalation": escalation,
        "headline": {key: f[key] for key in ("account", "band", "arr", "reason", "owner", "window")},
        "summary": f["summary"],
        "package": package,
    }


def build_payload(kind: str, escalation: dict, package: dict | None, *, idempotency_key: str | None = None) -> dict:
    builders = {"slack": slack_payload, "webhook": webhook_payload}
    if kind not in builders:
        raise ValueError(f"destination kind {kind!r}: expected one of {sorted(builders)}")
    return builders[kind](escalation, package, idempotency_key=idempotency_key)


TOPIC_MARK = {"re_alert": ":alarm_clock:", "reminder": ":memo:", "monitor": ":chart_with_downwards_trend:"}


def notice_payload(kind: str, topic: str, message: dict, *, idempotency_key: str, escalation_id: int | None = None) -> dict:
    """A notice (a re-alert, a reminder, a monitor's breach) from `message` = {title, text, facts}:
    for Slack `text` and `blocks` (header, text, the facts as fields, a context line with the key);
    for a webhook {"type": "churn.<topic>", version, idempotency_key, title, text, facts} (and
    escalation_id when it is about one)."""
    title, body, facts = message["title"], message["text"], message["facts"]
    if kind == "webhook":
        out = {"type": f"churn.{topic}", "version": PAYLOAD_VERSION, "idempotency_key": idempotency_key,
               "title": title, "text": body, "facts": facts}
        return out if escalation_id is None else {**out, "escalation_id": escalation_id}
    if kind != "slack":
        raise ValueError(f"destination kind {kind!r}: expected one of ['slack', 'webhook']")
    mark = TOPIC_MARK.get(topic, "")
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": str(title)[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _escape(body)[:SLACK_SECTION_LIMIT]}},
    ]
    if facts:  # Slack allows at most 10 fields in a section
        blocks.append({"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{_escape(k)}*\n{_escape(v)}"[:2000]}
                                                     for k, v in list(facts.items())[:10]]})
    context = [topic.replace("_", "-")] + ([f"escalation #{escalation_id}"] if escalation_id is not None else [])
    context.append(f"ref {idempotency_key[:16]}")  # Slack does not dedupe: lets a reader spot a repeat
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _escape(" · ".join(context))}]})
    return {"text": _escape(f"{mark} {title}: {body}".strip()), "blocks": blocks}


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


def deliver(store: Store, policy: EscalationPolicy | None = None, now: dt.datetime | None = None, *,
            send: Send | None = None, batch_size: int = 50, stopping: Callable[[], bool] | None = None) -> dict[str, int]:
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
    now = utc(now) or dt.datetime.now(UTC)
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
            headers = {"Content-Type": "application/json", "Idempotency-Key": alert["idempotency_key"],
                       "User-Agent": "churn-platform-alerts"}
            try:
                status = send(alert["url"], body, headers, settings.timeout_seconds)
                error = None if 200 <= status < 300 else f"HTTP {status}"
            except Exception as exc:  # timeouts, refused connections, DNS: one failed attempt each
                error = f"{type(exc).__name__}: {exc}"
            if error is None:
                store.mark_sent(alert["id"], now)
                counts["sent"] += 1
            else:
                outcome = store.mark_attempt_failed(alert["id"], now, error, max_attempts=settings.max_attempts,
                                                    backoff_seconds=settings.backoff_seconds, max_backoff_seconds=settings.max_backoff_seconds)
                if outcome in counts:
                    counts[outcome] += 1
    counts["pending"] = store.counts()["alerts_pending"]
    return counts


def flush_until_done(store: Store, policy: EscalationPolicy | None = None, start: dt.datetime | None = None, *,
                     send: Send | None = None, max_rounds: int = 100) -> dict:
    """Run `deliver()` on a simulated clock, jumping to each next retry, until nothing is pending
    (or `max_rounds`): the whole retry schedule in seconds, for tests and a manual drain.
    Returns the summed counts, the rounds run and the clock at the end."""
    now = utc(start) or dt.datetime.now(UTC)
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
