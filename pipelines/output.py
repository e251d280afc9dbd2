"""How every `churn` command answers: one JSON document on stdout with `--json`, else a human
line on stderr (where the logs and progress go too), so a script's stdout is only ever JSON."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.console import Console

err = Console(stderr=True)

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout (logs go to stderr).")


def emit(payload: dict[str, Any], as_json: bool, human: str) -> None:
    if as_json:
        sys.stdout.write(json.dumps(payload, default=str, sort_keys=True) + "\n")
    else:
        err.print(human)
