"""The platform's clock: the wall clock, or one running a fixed time behind it.

The last demo's data ends in the past (2025-12-31). Served on the wall clock, every escalation it
opened read "overdue by 336 days" in the CS workspace and the relay expired them all at start.
So the demo runs on its own clock: it read the end of the demo's data when the demo finished and
runs on from there (`serving.launch.demo_clock_offset`), the same in `churn serve` (the setting
CHURN_CLOCK_OFFSET_SECONDS, which `serving.runtime` passes to `set_offset`) and in the commands
that work the demo's store (`serving.launch.use_clock`). The API, the workspace, the store and the
relay all read the time here.
"""

from __future__ import annotations

import datetime as dt

_offset = dt.timedelta(0)


def set_offset(seconds: float) -> None:
    """Run this process's clock `seconds` behind the wall clock (0: the wall clock)."""
    global _offset
    _offset = dt.timedelta(seconds=seconds)


def now() -> dt.datetime:
    """The time, timezone-aware in UTC."""
    return dt.datetime.now(dt.UTC) - _offset
