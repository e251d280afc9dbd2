"""The `churn` command line: the commands (pipelines/commands/, one module per user task) under
one group, and `main()`, the console entry point.

Contract: `--json` prints one JSON document on stdout and nothing else there; progress and logs go
to stderr. Exit status 0 on success, 2 on bad input, 1 on other failures. Every failure a user can
meet is one clear message, never a traceback.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

import click

from core.errors import ChurnError
from pipelines.commands import data, escalations, models, operations, text, users
from pipelines.console import prefect_console_to, quiet_bad_input

COMMANDS = (
    *data.COMMANDS,
    *models.COMMANDS,
    *operations.COMMANDS,
    *escalations.COMMANDS,
    *text.COMMANDS,
    *users.COMMANDS,
)


@click.group(commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="churn-platform", prog_name="churn")
def app() -> None:
    """Churn risk, explanations and support-to-CS escalation for B2B SaaS."""


def main(argv: list[str] | None = None) -> int:
    """Console entry point: map failures to exit codes and one-line messages.

    Called with no arguments it runs the process's own command line and owns the process: SIGTERM
    and SIGINT raise `Stopped` in the main thread, and the process ends once that has unwound,
    without waiting for worker threads (core/processes.py)."""
    from core import processes

    owner = argv is None
    if owner:
        processes.stop_on_signals()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    # no phoning home from the embedded Prefect server (a user's own setting wins)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    for noisy in ("matplotlib", "alembic", "mlflow.store.db.utils", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    quiet_bad_input()
    prefect_console_to(sys.stderr)
    try:
        code = app.main(args=argv, prog_name="churn", standalone_mode=False)
        if isinstance(code, int) and code:
            return code  # a command that ended with click.exceptions.Exit(code)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show(file=sys.stderr)
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:  # click turns KeyboardInterrupt into Abort
        signum = getattr(exc.__cause__, "signum", getattr(exc, "signum", signal.SIGINT))
        if owner:
            processes.end_now(signum)
        sys.stderr.write(f"stopped by {signal.Signals(signum).name}\n")
        return 128 + signum
    except ChurnError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
