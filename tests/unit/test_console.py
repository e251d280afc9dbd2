"""How a command's failure reads on the console, and what the run's record keeps."""

from __future__ import annotations

import io
import logging

from core.errors import InputError
from pipelines.console import quiet_bad_input


class _Record(logging.Handler):
    """What Prefect's API handler gets: the run's record on the server."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage() + (" <traceback>" if record.exc_info else ""))


def test_bad_input_reaches_the_console_once_and_the_runs_record_whole():
    """The command prints a ChurnError as its one `error:` line; Prefect's lines about it stay off
    the console (main()'s stderr handler), in whatever order they come (a task that may retry logs
    only its final state), and the run's record keeps them, tracebacks left out. Other lines, a
    warning quoting the same error from a flow that carries on included, still show."""
    quiet_bad_input()
    console, record = logging.StreamHandler(io.StringIO()), _Record()
    root, runs = logging.getLogger(), logging.getLogger("prefect.flow_runs")
    root.addHandler(console)
    runs.addHandler(record)
    level = runs.level
    runs.setLevel(logging.INFO)  # Prefect's flows log their final state at INFO
    error = InputError("table 'usage_daily': no rows")
    try:
        runs.error(f"Finished in state Failed('Task run encountered an exception InputError: {error}')")
        try:
            raise error
        except InputError:
            runs.error(f"Encountered exception during execution: {error!r}", exc_info=True)
        runs.info(f'Finished in state Failed("Flow run encountered an exception: InputError: {error}")')
        runs.warning(f"monitoring failed: {error}")
        runs.error('Finished in state Failed("Task run encountered an exception OSError: disk full")')
    finally:
        root.removeHandler(console)
        runs.removeHandler(record)
        runs.setLevel(level)
    shown = console.stream.getvalue()
    assert shown.count("no rows") == 1 and "monitoring failed: table 'usage_daily'" in shown
    assert "OSError: disk full" in shown
    assert len(record.lines) == 5 and sum("no rows" in line for line in record.lines) == 4
    assert not any("<traceback>" in line for line in record.lines)
