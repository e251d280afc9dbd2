"""The operational store: every decision (the audit trail), the escalations they open or merge
into, the alert outbox, follow-ups and CS feedback.

One SQLAlchemy 2 model, two backends (docs/design.md, storage): a SQLite file by default (zero set-up,
one machine) and PostgreSQL by URL when several workers share it. The only backend-specific code
is how a writer serialises itself: SQLite takes the database write lock at BEGIN (`BEGIN
IMMEDIATE`), PostgreSQL takes a transaction-scoped advisory lock per dedupe key and claims outbox
rows with `FOR UPDATE SKIP LOCKED`; both make "look for an open escalation, else create one" safe
against a concurrent writer.

The policy is given at construction (`Store(url, policy)`): the cooldown and the alert routing are
properties of the deployment, and one store serves one policy at a time. `record()` also accepts
`policy=` to replay history under another policy.

Every public method is one transaction. `record()` commits the escalation and its outbox rows
together, before anything is sent (`escalation.alerts.deliver` reads the outbox afterwards): a
crash after the commit loses no alert, a crash before it loses the whole decision, never half.

The outbox also holds notices that belong to no escalation (`enqueue_notice`: a monitor's
breach) and the relay's re-alerts and reminders (escalation/relay.py drives them: `realert_overdue`,
`remind_follow_ups`, `expire_stale`, each marking what it did in the same transaction, so each
happens once). `take_lease` lets one process at a time do a job such as the relay's polling.

Times are UTC. Naive datetimes are read as UTC (as everywhere in the platform); values are stored
as naive UTC in both backends and come back timezone-aware.

The package: `schema` (the tables and their vocabulary), `database` (opening a database and
upgrading one made by an earlier version), `messages` (what the store writes into the outbox
besides an escalation's own alert), `store` (the Store, made of one part per job: `base` its
database and transactions, `recording`, `lifecycle`, `clock`, `outbox` and `users`).

The store also keeps the workspace's users (`users`: username, name, role, password hash; the
workspace and `churn users` hash and check the passwords, the store only keeps them).
"""

from core.vocabulary import OUTCOMES, RESOLUTION_OUTCOMES, STATUSES
from escalation.store.messages import alert_view, idempotency_key
from escalation.store.schema import (
    ACTIVE,
    ALERT_STATUSES,
    ROLES,
    TOPICS,
    TRANSITIONS,
    AlertRow,
    Base,
    DecisionRow,
    EscalationRow,
    FeedbackRow,
    FollowUpRow,
    LeaseRow,
    StatusChangeRow,
    UnknownEscalation,
    UserRow,
    dumps,
    utc,
)
from escalation.store.store import RecordResult, Store

__all__ = [
    "ACTIVE",
    "ALERT_STATUSES",
    "OUTCOMES",
    "RESOLUTION_OUTCOMES",
    "STATUSES",
    "TOPICS",
    "TRANSITIONS",
    "AlertRow",
    "Base",
    "DecisionRow",
    "EscalationRow",
    "FeedbackRow",
    "FollowUpRow",
    "LeaseRow",
    "ROLES",
    "RecordResult",
    "StatusChangeRow",
    "Store",
    "UnknownEscalation",
    "UserRow",
    "alert_view",
    "dumps",
    "idempotency_key",
    "utc",
]
