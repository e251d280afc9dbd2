"""The console every `churn` command shares: how it answers, its progress bars, and Prefect's logs.

`--json` prints one JSON document on stdout; everything else (the human line, logs, progress) goes
to stderr, so a script's stdout is only ever JSON. Nothing here runs at import time: `main()`
(pipelines/cli.py) calls `quiet_bad_input()` and `prefect_console_to()` once per invocation.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from core.errors import ChurnError

if TYPE_CHECKING:
    from core.settings import Settings

#: the answers and messages a person reads: text as given (no markup: an account name or a list in
#: brackets was dropped as a style tag) and lines unwrapped (piped, rows were cut at 80 columns)
err = Console(stderr=True, markup=False, soft_wrap=True)

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON document on stdout (logs go to stderr)."
)


def path_option(*names: str, **kwargs: Any) -> Any:
    """A click option whose value is a Path (a file or folder, not checked for existence here)."""
    return click.option(*names, type=click.Path(path_type=Path), **kwargs)


data_option = path_option("--data", default=None, help="Folder with the input tables [default: CHURN_DATA_DIR].")
features_option = path_option("--features", "features_dir", required=True, help="Output folder of `churn features`.")
scores_option = path_option(
    "--scores",
    "scores_dir",
    default=None,
    help="Output of `churn score` [default: CHURN_SCORES_DIR or DATA_DIR/scores].",
)


def number(value: float | None, spec: str = ".3f") -> str:
    """A figure for a human reader; "-" where there is none."""
    return "-" if value is None else format(value, spec)


def emit(payload: dict[str, Any], as_json: bool, human: str) -> None:
    """The command's answer: `payload` as JSON on stdout with --json, else `human` on stderr."""
    if as_json:
        sys.stdout.write(json.dumps(payload, default=str, sort_keys=True) + "\n")
    else:
        err.print(human)


@contextlib.contextmanager
def progress_bar() -> Iterator[None]:
    """A progress bar per fanned-out step of the flows run inside (blocks of accounts, ...)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from pipelines.flows import progress_to

    with Progress(
        TextColumn("{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        steps: dict[str, Any] = {}

        def hook(step: str, done: int, total: int) -> None:
            if step not in steps:
                steps[step] = bar.add_task(step, total=total)
            bar.update(steps[step], completed=done)

        with progress_to(hook):
            yield


@contextlib.contextmanager
def prefect_session(settings: Settings) -> Iterator[str]:
    """Flows inside this block record their runs in the user's Prefect server (PREFECT_API_URL) or
    the local one all commands share, started by the first (pipelines/prefect_server.py); `settings`:
    the command's."""
    from pipelines.prefect_server import prefect_api

    with prefect_api(settings, say=err.print) as url:
        yield url


#: Prefect's last line about a failed task or flow: 'Finished in state Failed("Task run encountered
#: an exception InputError: ...")', or "... Flow run encountered an exception: InputError: ..."
_FAILED_BY = re.compile(r"Finished in state Failed\(.(?:Task|Flow) run encountered an exception:? (\w+):")


def _churn_error_names() -> set[str]:
    names, classes = set(), [ChurnError]
    while classes:
        cls = classes.pop()
        names.add(cls.__name__)
        classes.extend(cls.__subclasses__())
    return names


class _BadInputFilter(logging.Filter):
    """Prefect logs a failed task's or flow's traceback; for bad input (ChurnError) the one line
    that names the problem is the whole story, so the traceback is left out. The lines about it
    are marked `bad_input`, and kept off the console (_SaidByTheCommand)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], ChurnError):
            record.exc_info, record.exc_text = None, None
            record.bad_input = True
        else:
            ended = _FAILED_BY.match(record.getMessage())
            record.bad_input = ended is not None and ended.group(1) in _churn_error_names()
        if record.bad_input:
            _SaidByTheCommand.guard(_consoles())  # Prefect's are created with its first run, after main() began
        return True


class _SaidByTheCommand(logging.Filter):
    """On the console, bad input is the command's one `error:` line (pipelines/cli.py); Prefect's
    lines about it (the task failed, its final state, the flow failed, its final state) stay in the
    run's record on the Prefect server, off the console."""

    @classmethod
    def guard(cls, handlers: list[logging.Handler]) -> None:
        for handler in handlers:
            if not any(isinstance(f, cls) for f in handler.filters):
                handler.addFilter(cls())

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "bad_input", False)


def quiet_bad_input() -> None:
    """Prefect's run loggers log bad input as one line, without its traceback (idempotent)."""
    for name in ("prefect.task_runs", "prefect.flow_runs", "prefect.task_engine", "prefect.flow_engine"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _BadInputFilter) for f in logger.filters):
            logger.addFilter(_BadInputFilter())


def _prefect_consoles() -> Iterator[logging.Handler]:
    """Prefect's console log handlers, once Prefect has set up its logging."""
    if "prefect" not in sys.modules:
        return
    for name in ["", *(n for n in logging.Logger.manager.loggerDict if n.startswith("prefect"))]:
        for handler in logging.getLogger(name).handlers:
            if type(handler).__name__ == "PrefectConsoleHandler":
                yield handler


def _consoles() -> list[logging.Handler]:
    """Where log lines reach the user: main()'s stderr handler (logging.basicConfig) and Prefect's."""
    mine = [h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler]
    return [*mine, *_prefect_consoles()]


def prefect_console_to(stream) -> None:
    """Prefect's console log handlers keep the stderr of the moment Prefect was imported; a later
    `main()` in the same process (a notebook, a test) may have another: follow it."""
    for handler in _prefect_consoles():
        handler.stream = stream  # not setStream(): it flushes the old stream, which may be closed
        handler.console.file = stream
