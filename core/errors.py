"""Errors a user can meet, and the exit status each one maps to.

`InputError` (exit 2) is bad input: a table that breaks its contract, a bad flag, a bad setting.
`ChurnError` (exit 1) is any other failure the platform anticipated. Both carry a message written
for the person who has to fix the problem, never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


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
        return (
            f"table '{self.table}', column '{self.column}': rule '{self.rule}' broken, expected {self.expected};{where}"
        )


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


def describe_validation(
    exc: ValidationError,
    template: str = "{key}: {message}",
    *,
    prefix: tuple[str | int, ...] = (),
    depth: int | None = None,
    empty: str | None = "",
    names: Mapping[str, str] | None = None,
    got: bool = False,
    plain_value_errors: bool = False,
) -> str:
    """A pydantic `ValidationError` as one line, its problems joined by "; ".

    Each problem is `template` filled with {key} (the error's location dotted after `prefix`, its
    first `depth` parts only when given, renamed by `names`, `empty` when there is none), {KEY}
    (the key upper-cased, for environment variable names) and {message} (pydantic's message, then
    " (got <value>)" with `got`, unless the value is a mapping). With `empty=None` a problem
    without a location is its message alone. `plain_value_errors`: a message of the platform's
    own validators loses pydantic's "Value error, " prefix and, like a missing value, shows no value.
    """
    problems = []
    for e in exc.errors():
        key = ".".join(str(part) for part in (*prefix, *e["loc"][:depth]))
        key = (names or {}).get(key, key) if key else (empty or "")
        message = e["msg"].removeprefix("Value error, ") if plain_value_errors else e["msg"]
        shown = "input" in e and not isinstance(e["input"], dict)
        if plain_value_errors:
            shown = shown and e["type"] != "value_error" and e["input"] is not None
        message += f" (got {e['input']!r})" if got and shown else ""
        problems.append(
            message if not key and empty is None else template.format(key=key, KEY=key.upper(), message=message)
        )
    return "; ".join(problems)
