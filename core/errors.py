"""Errors a user can meet, and the exit status each one maps to.

`InputError` (exit 2) is bad input: a table that breaks its contract, a bad flag, a bad setting.
`ChurnError` (exit 1) is any other failure the platform anticipated. Both carry a message written
for the person who has to fix the problem, never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


class ChurnError(Exception):
    """A failure the platform anticipated; the CLI prints it as one message, exit status 1."""

    exit_code = 1


class InputError(ChurnError):
    """Bad input from the user (data, flags, settings); exit status 2."""

    exit_code = 2


@dataclass(frozen=True)
class Violation:
    """One broken rule of a table contract, with a few offending keys to look at."""

    table: str
    column: str
    rule: str
    expected: str
    keys: tuple[str, ...] = field(default_factory=tuple)
    count: int = 0

    def describe(self) -> str:
        shown = ", ".join(self.keys)
        more = f" (and {self.count - len(self.keys)} more)" if self.count > len(self.keys) else ""
        where = f" offending {self.count} row(s): {shown}{more}" if self.count else ""
        return f"table '{self.table}', column '{self.column}': rule '{self.rule}' broken, expected {self.expected};{where}"


class ContractError(InputError):
    """One or more input tables break their contract. Nothing has been written."""

    def __init__(self, violations: Sequence[Violation]):
        self.violations = list(violations)
        lines = [v.describe() for v in self.violations]
        head = f"input data breaks {len(lines)} contract rule(s); nothing was written"
        super().__init__(head + ":\n  - " + "\n  - ".join(lines))


def format_keys(values: Iterable[object], limit: int = 5) -> tuple[str, ...]:
    """The first `limit` offending keys as short strings, for error messages."""
    out: list[str] = []
    for value in values:
        out.append(str(value))
        if len(out) >= limit:
            break
    return tuple(out)
