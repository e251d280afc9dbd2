"""A new champion without a restart. Each worker runs one daemon thread that asks the registry,
every CHURN_MODEL_POLL_SECONDS, which version the served alias (champion) points at; when it moved,
the runtime loads that version and recomputes every stored account's answer on this thread, never
a request's, then swaps the whole state in with one assignment (serving/runtime.py, `refresh`).
A version that fails to load is logged and the old one keeps serving; the next poll tries again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("churn.serving")


class ModelWatcher:
    """Polls `runtime.refresh()` every `interval` seconds (0: never; nor for a URI without an alias,
    which cannot move). `on_swap` runs after each swap, on this thread."""

    def __init__(self, runtime, interval: float, on_swap: Callable[[], None] | None = None):
        self.runtime = runtime
        self.interval = interval
        self.on_swap = on_swap
        self.swaps = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: why the last poll could not swap (None once a poll succeeds)
        self.last_error: str | None = None

    def start(self) -> ModelWatcher:
        if self.interval > 0 and self.runtime.alias is not None:
            self._thread = threading.Thread(target=self._run, name="churn-model-watcher", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()

    def check(self) -> str | None:
        """One poll: the version swapped to, or None (nothing new, or it could not be loaded)."""
        before = self.runtime.state.version
        started = time.perf_counter()
        try:
            version = self.runtime.refresh()
        except Exception as exc:  # noqa: BLE001 - whatever breaks a new model, the old one keeps serving
            if str(exc) != self.last_error:  # once per failure, not once per poll
                log.error(
                    "could not swap to the new %s version: %s; still serving version %s",
                    self.runtime.alias,
                    exc,
                    before,
                )
            self.last_error = str(exc)
            return None
        self.last_error = None
        if version is not None:
            self.swaps += 1
            log.info(
                "now serving version %s (was %s): loaded and %d stored answers recomputed in %.2f s",
                version,
                before,
                len(self.runtime.state.answers),
                time.perf_counter() - started,
            )
            if self.on_swap is not None:
                self.on_swap()
        return version

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
