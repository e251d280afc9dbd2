"""Alert payloads: the Slack incoming-webhook message and the generic JSON webhook event of an
escalation, and the notices (re-alerts, reminders, monitors' breaches). Pure functions of their
inputs: the store builds them when it queues an alert, so a later send delivers exactly what was
decided; `escalation.alerts` sends them.
"""

from __future__ import annotations

from typing import Any

BAND_MARK = {"critical": ":rotating_light:", "high": ":warning:", "watch": ":eyes:"}
SLACK_SECTION_LIMIT = 2900  # Slack rejects a section text over 3000 characters
PAYLOAD_VERSION = 1


def _escape(text: Any) -> str:
    # Slack mrkdwn: these three are control characters (links, mentions)
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _money(value: Any) -> str:
    try:
        return f"${float(value):,.0f}"
    except (TypeError, ValueError):
        return "unknown"


def _present(*values: Any) -> Any:
    """The first value that is not missing or empty."""
    return next((v for v in values if v not in (None, "", [], {})), None)


def alert_facts(escalation: dict, package: dict | None) -> dict:
    """The few facts every alert shows, from the escalation and (when there is one) its package.

    A package comes as `HandoffPackage.to_dict()` ({"form": {...}, "summary": ...}), as the form
    itself with its summary beside it (the files `churn score` writes), or as a caller's own
    headline ({"account_name", "arr", "summary"}); the account's name and ARR are the form's
    `customer` fields, the window its `what_is_needed.response_window_minutes`."""
    package = package or {}
    form = package.get("form") or package
    customer = form.get("customer") or {}
    needed = form.get("what_is_needed") or {}
    name = _present(package.get("account_name"), package.get("name"), customer.get("name"))
    window = escalation.get("response_window_minutes") or _present(
        package.get("response_window_minutes"), needed.get("response_window_minutes")
    )
    return {
        "account": f"{name} ({escalation['account_id']})" if name else str(escalation["account_id"]),
        "band": str(escalation.get("band") or "none"),
        "arr": _present(package.get("arr"), customer.get("arr")),
        "reason": escalation.get("detail") or str(escalation.get("reason", "")).replace("_", " "),
        "owner": escalation.get("owner") or "unassigned",
        "window": f"{window} min" if window else "not set",
        "summary": package.get("summary") or "",
    }


def slack_payload(escalation: dict, package: dict | None = None, *, idempotency_key: str | None = None) -> dict:
    """A Slack incoming-webhook message: `text` (notifications, clients without blocks) and `blocks`
    with band, account, ARR, reason, owner, response window and the handoff summary."""
    f = alert_facts(escalation, package)
    band = f["band"].upper()
    mark = BAND_MARK.get(f["band"], "")
    text = f"{mark} {band} churn escalation: {f['account']}: {f['reason']}. Owner {f['owner']}, respond within {f['window']}."
    fields = [
        ("Band", band),
        ("Account", f["account"]),
        ("ARR", _money(f["arr"])),
        ("Reason", f["reason"]),
        ("Owner", f["owner"]),
        ("Respond within", f["window"]),
    ]
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{band} churn escalation: {f['account']}"[:150]}},
        {
            "type": "section",
            "fields": [{"type": "mrkdwn", "text": f"*{label}*\n{_escape(value)}"[:2000]} for label, value in fields],
        },
    ]
    if f["summary"]:
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": _escape(f["summary"])[:SLACK_SECTION_LIMIT]}}
        )
    context = [
        f"escalation #{escalation.get('id')}",
        f"queue {escalation.get('queue')}",
        f"{escalation.get('occurrences', 1)} occurrence(s)",
    ]
    if escalation.get("follow_up_due"):
        context.append(f"follow-up due {escalation['follow_up_due']}")
    if idempotency_key:
        context.append(f"ref {idempotency_key[:16]}")  # Slack does not dedupe: lets a reader spot a repeat
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _escape(" · ".join(context))}]})
    return {"text": _escape(text), "blocks": blocks}


def webhook_payload(escalation: dict, package: dict | None = None, *, idempotency_key: str | None = None) -> dict:
    """A generic JSON event: the escalation, the headline facts and the whole handoff package."""
    f = alert_facts(escalation, package)
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


def notice_payload(
    kind: str, topic: str, message: dict, *, idempotency_key: str, escalation_id: int | None = None
) -> dict:
    """A notice (a re-alert, a reminder, a monitor's breach) from `message` = {title, text, facts}:
    for Slack `text` and `blocks` (header, text, the facts as fields, a context line with the key);
    for a webhook {"type": "churn.<topic>", version, idempotency_key, title, text, facts} (and
    escalation_id when it is about one)."""
    title, body, facts = message["title"], message["text"], message["facts"]
    if kind == "webhook":
        out = {
            "type": f"churn.{topic}",
            "version": PAYLOAD_VERSION,
            "idempotency_key": idempotency_key,
            "title": title,
            "text": body,
            "facts": facts,
        }
        return out if escalation_id is None else {**out, "escalation_id": escalation_id}
    if kind != "slack":
        raise ValueError(f"destination kind {kind!r}: expected one of ['slack', 'webhook']")
    mark = TOPIC_MARK.get(topic, "")
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": str(title)[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _escape(body)[:SLACK_SECTION_LIMIT]}},
    ]
    if facts:  # Slack allows at most 10 fields in a section
        blocks.append(
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*{_escape(k)}*\n{_escape(v)}"[:2000]}
                    for k, v in list(facts.items())[:10]
                ],
            }
        )
    context = [topic.replace("_", "-")] + ([f"escalation #{escalation_id}"] if escalation_id is not None else [])
    context.append(f"ref {idempotency_key[:16]}")  # Slack does not dedupe: lets a reader spot a repeat
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _escape(" · ".join(context))}]})
    return {"text": _escape(f"{mark} {title}: {body}".strip()), "blocks": blocks}
