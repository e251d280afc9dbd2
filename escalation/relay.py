"""The relay: sends the alert outbox continuously and drives the lifecycle's clock.

One pass (`Relay.tick(now)`): re-alert the escalations whose response window passed without
acknowledgement, remind owners of follow-ups that fell due, expire escalations nobody worked for
`windows.expire_after_hours`, then deliver what the outbox holds (`escalation.alerts.deliver`).
`Relay.run(stop, interval)` repeats it every `interval` seconds on the clock it was given while it
holds the store's lease `relay`, and delivers at once after each `wake()` (an escalation recorded
in the same process), lease or not.

Two guarantees, two mechanisms. The lease (`Store.take_lease`) makes one relay at a time do the
polling among the workers and replicas sharing a store, so they do not all hit the database every
second; a relay that dies without releasing it is replaced when it expires. It is an economy, not
the safety: the outbox's row claims (`Store.claim_alerts`: BEGIN IMMEDIATE on SQLite, FOR UPDATE
SKIP LOCKED on PostgreSQL) are what keep two senders off one row, so two relays that both believe
they lead still never send a row twice at once. Each re-alert, reminder and expiry happens in the
same transaction that marks it done (realerted_at, reminded_at, the status), so it happens once.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

from core import clock
from escalation.alerts import Send, deliver
from escalation.policy import EscalationPolicy
from escalation.store import Store, utc

UTC = dt.UTC
log = logging.getLogger("churn.relay")
#: the store lease that makes one relay at a time do the polling
LEASE_NAME = "relay"
#: a lease outlives this many intervals, so a busy pass does not lose it; a dead leader is
#: replaced after at most this (or MIN_LEASE_SECONDS)
LEASE_INTERVALS = 5
MIN_LEASE_SECONDS = 10.0
#: the shortest wait between two passes (a retry already due waits this long, not zero)
MIN_WAIT_SECONDS = 0.02
COUNTS = ("re_alerted", "reminded", "expired", "sent", "retried", "failed", "pending")


def _now() -> dt.datetime:
    return clock.now()


class Relay:
    """Sends the outbox of `store` under `policy` (default: the store's). `clock` gives the time
    each pass runs at (tests pass a controlled one); `send` is the HTTP POST (alerts.http_post)."""

    def __init__(
        self,
        store: Store,
        policy: EscalationPolicy | None = None,
        *,
        clock: Callable[[], dt.datetime] = _now,
        send: Send | None = None,
        holder: str | None = None,
        batch_size: int = 50,
    ):
        self.store = store
        self.policy = policy or store.policy
        self.clock = clock
        self.send = send
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.batch_size = batch_size
        self.totals = dict.fromkeys(COUNTS, 0)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._run_stop: threading.Event | None = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self, now: dt.datetime | None = None) -> dict[str, int]:
        """One pass at `now` (default: the clock): re-alerts, reminders, expiry, then delivery.
        Returns the counts of each; pending is what the outbox still holds for later."""
        now = utc(now) or utc(self.clock())
        counts = {
            "re_alerted": self.store.realert_overdue(now, policy=self.policy),
            "reminded": self.store.remind_follow_ups(now, policy=self.policy),
            "expired": self.store.expire_stale(now, policy=self.policy),
        }
        counts.update(self.deliver(now))
        for key in ("re_alerted", "reminded", "expired"):
            self.totals[key] += counts[key]
        return counts

    def deliver(self, now: dt.datetime | None = None) -> dict[str, int]:
        """Delivery alone (the pass after `wake()`): what is due in the outbox at `now`."""
        counts = deliver(
            self.store,
            self.policy,
            utc(now) or utc(self.clock()),
            send=self.send,
            batch_size=self.batch_size,
            stopping=self._stopping,
        )
        for key in ("sent", "retried", "failed"):
            self.totals[key] += counts[key]
        self.totals["pending"] = counts["pending"]
        return counts

    def lead(self, interval: float, now: dt.datetime | None = None) -> bool:
        """Take or renew the lease for the next passes; False while another relay holds it."""
        seconds = max(MIN_LEASE_SECONDS, LEASE_INTERVALS * interval)
        return self.store.take_lease(LEASE_NAME, self.holder, seconds, utc(now) or utc(self.clock()))

    def run(self, stop: threading.Event, interval: float, *, once: bool = False) -> dict[str, int]:
        """A pass (`tick`) every `interval` seconds while this relay holds the lease, and a delivery
        at once after each `wake()` or when a retry falls due sooner, lease or not; until `stop` is
        set (or after one pass led, with `once`). An error in a pass (the database away for a
        moment) is logged and the next one tries again: the outbox keeps every row. Gives the lease
        up on the way out. Returns the summed counts."""
        self._run_stop = stop
        self._done.clear()
        woken, last_tick = False, -math.inf
        try:
            while not self._stopping():
                wait = interval
                try:
                    if time.monotonic() - last_tick >= interval and self.lead(interval):
                        last_tick = time.monotonic()
                        self.tick()
                        if once:
                            break
                        wait = self._until_next_retry(interval)
                    elif woken:
                        # whoever leads: one pass per event is no polling, and the row claims keep
                        # it off the leader's rows; delivery only (the clock's checks are the
                        # leader's, each a write transaction an alert would wait behind)
                        self.deliver()
                        wait = self._until_next_retry(interval)
                except Exception:  # a relay outlives a failed pass; the rows stay in the outbox
                    log.exception("relay pass failed; retrying in %.1f s", interval)
                # a wait cut short for a retry due ends in a delivery pass, as a wake does
                woken = self._wake.wait(wait) or wait < interval
                self._wake.clear()
        finally:
            try:
                self.store.release_lease(LEASE_NAME, self.holder)
            except Exception:  # at shutdown; the lease expires on its own
                log.warning("relay could not release its lease; it expires on its own", exc_info=True)
            self._done.set()
        return dict(self.totals)

    def _until_next_retry(self, interval: float) -> float:
        """Seconds to the next pass: `interval`, or sooner when a retry falls due before it (a
        backoff shorter than the interval is kept, not rounded up to it)."""
        due = self.store.next_alert_due()
        if due is None:
            return interval
        return min(interval, max(MIN_WAIT_SECONDS, (due - utc(self.clock())).total_seconds()))

    def _stopping(self) -> bool:
        return self._stop.is_set() or (self._run_stop is not None and self._run_stop.is_set())

    def wake(self) -> None:
        """Run the next pass now (an escalation was just recorded in this process)."""
        self._wake.set()

    def start(self, interval: float) -> threading.Thread:
        """`run` on a daemon thread (the service's background relay); `stop()` ends it."""
        self._thread = threading.Thread(target=self.run, args=(self._stop, interval), name="churn-relay", daemon=True)
        self._thread.start()
        return self._thread

    def wait(self, timeout: float | None = None) -> bool:
        """Whether the thread's `run` has ended (lease given up), after waiting up to `timeout`.
        Not Thread.join: on Python 3.11 a join interrupted by a signal (Ctrl-C, SIGTERM) leaves the
        thread looking finished, and the process would end before the relay hands its rows back."""
        return self._done.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """End `run` after the send in progress (bounded by alerts.timeout_seconds): the rows it
        claimed and did not send go back to the outbox, the lease is given up."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self.wait(timeout)
