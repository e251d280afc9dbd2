"""Child processes a command starts, and stopping the command with everything under it.

A child that leads its own session (start_new_session) is out of reach of the terminal's Ctrl-C
and of a signal sent to the command's process group: the command forwards the stop itself, to the
child's whole group, and after a grace period kills what is left, descendants included (found
through /proc, whatever group they moved to).

A command that owns its process (`stop_on_signals`) turns SIGTERM and SIGINT into `Stopped` in
the main thread, so every `finally` runs (temporary outputs removed, children stopped), and ends
within STOP_DEADLINE_SECONDS whatever the unwinding meets; a second signal ends it at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

#: a stopped command gives its children this long to stop before they are killed
CHILD_GRACE_SECONDS = 5.0
#: after a stop signal the process ends within this many seconds, whatever the unwinding meets
STOP_DEADLINE_SECONDS = 8.0
_children: list[subprocess.Popen] = []  # started by run_child: stopped with this process
_spared: set[int] = set()  # started here but meant to outlive it (spare)
_stopping: list[int] = []


def alive(pid: int) -> bool:
    """Running (a zombie, exited but not yet reaped, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def descendants(pid: int) -> set[int]:
    """Children, their children, ... of `pid` (empty where /proc is missing)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _die_with_parent() -> None:
    """In the child, before exec (Linux): SIGTERM when the command that started it dies, even by SIGKILL."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start(command: list[str], **kwargs) -> subprocess.Popen:
    """`command` as the leader of its own session, stopped with its parent."""
    return subprocess.Popen(
        command,
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509 - a prctl call, no lock taken
        **kwargs,
    )


def stop(children: list[subprocess.Popen], grace: float) -> None:
    """SIGTERM each child's process group, wait up to `grace` seconds for them and every process
    under them, then SIGKILL the rest."""
    tree = {p for child in children for p in (child.pid, *descendants(child.pid))}
    for child in children:
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        for child in children:
            child.poll()  # reap
        tree |= {p for child in children if child.returncode is None for p in descendants(child.pid)}
        if not any(alive(p) for p in tree):
            return
        time.sleep(0.1)
    for pid in tree | {p for child in children for p in descendants(child.pid)}:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=2)


def spare(pid: int) -> None:
    """A process this one started that must outlive it (a server later commands reuse): end_now leaves it."""
    _spared.add(pid)


def run_child(command: list[str], **kwargs) -> int:
    """Run `command` (its own session, stopped with this process) to its end; a stop signal to this
    command stops it and everything under it, within CHILD_GRACE_SECONDS."""
    child = start(command, **kwargs)
    _children.append(child)
    try:
        return child.wait()
    except KeyboardInterrupt:
        stop([child], CHILD_GRACE_SECONDS)
        raise


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGINT, raised in the main thread."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def stop_on_signals() -> None:
    """SIGTERM and SIGINT raise Stopped in the main thread (call from it, for a process's own command)."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _on_stop_signal)


def _on_stop_signal(signum: int, frame) -> None:
    if _stopping:  # a second signal: now
        end_now(signum)
    _stopping.append(signum)

    def deadline() -> None:
        time.sleep(STOP_DEADLINE_SECONDS)
        end_now(signum)

    threading.Thread(target=deadline, daemon=True, name="stop-deadline").start()
    raise Stopped(signum)


def end_now(signum: int) -> None:
    """Kill the children and everything under this process (a flow run's process), except what is
    spared, and end the process whatever its threads are doing (a text block on a worker thread
    writes only under temporary paths)."""
    stop(_children, 0)
    for pid in descendants(os.getpid()) - _spared:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    sys.stderr.write(f"stopped by {signal.Signals(signum).name}\n")
    sys.stderr.flush()
    os._exit(128 + signum)
