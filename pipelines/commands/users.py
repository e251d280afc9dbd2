"""`churn users`: who may sign in to the CS workspace (serving/workspace, docs/workspace.md).

Users live in the operational store (CHURN_STORE_URL); the YAML file CHURN_WORKSPACE_USERS names
may declare more, with hashes `churn users hash` makes. A password is never an argument (it would
sit in the shell's history and the process list): it is typed twice at a prompt, or read from the
first line of standard input with --password-stdin. Nothing runs at import time.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from core.errors import InputError
from pipelines.console import emit, err, json_option

ROLE_HELP = "viewer (reads only), csm (works their escalations), cs_lead or admin (everyone's, and the book view)."


@contextmanager
def _users() -> Iterator[tuple[Any, Any]]:
    """(the store, the workspace's users: the settings file's and the store's)."""
    from core.settings import load_settings
    from escalation.policy import load_policy
    from escalation.store import Store
    from serving.workspace.auth import Users

    settings = load_settings()
    with Store(settings.store_url, load_policy(settings.config_dir)) as store:
        yield store, Users(store, settings.workspace_users)


def _password(from_stdin: bool) -> str:
    """A new password: the first line of standard input, or typed twice at a prompt; checked."""
    from serving.workspace.auth import check_password

    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise InputError("--password-stdin: standard input was empty; expected the password on its first line")
        return check_password(line.rstrip("\r\n"))
    if not sys.stdin.isatty():
        raise InputError(
            "password: standard input is not a terminal, so there is no prompt; pipe the password in with "
            "--password-stdin (never on the command line)"
        )
    return check_password(click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True))


def _not_declared(users: Any, username: str) -> None:
    declared = users.declared().get(username)
    if declared is not None:
        raise InputError(
            f"username {username!r}: declared in CHURN_WORKSPACE_USERS ({declared.source}); change it there"
        )


password_stdin = click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of standard input (no prompt)."
)


@click.group("users")
def users() -> None:
    """Who may sign in to the CS workspace (/app of `churn serve`), with which role."""


@users.command("add")
@click.argument("username")
@click.option("--name", required=True, help="The person's name; for a CSM, as the data spells the account owner.")
@click.option("--role", required=True, help=ROLE_HELP)
@password_stdin
@json_option
def users_add(username: str, name: str, role: str, password_stdin: bool, as_json: bool) -> None:
    """Add a user to the store (the password is prompted for twice, or read with --password-stdin)."""
    from escalation.store import ROLES
    from serving.workspace.auth import User, hash_password

    if role not in ROLES:  # before asking for a password
        raise InputError(f"--role {role!r}: expected one of {', '.join(ROLES)}")
    with _users() as (store, users):
        _not_declared(users, username)
        if store.user(username) is not None:  # before asking for a password
            raise InputError(
                f"username {username!r}: already a user; expected a new username (`churn users set-password` "
                "changes a password)"
            )
        row = store.add_user(username, name, role, hash_password(_password(password_stdin)))
    user = User(row["username"], row["name"], row["role"], row["password_hash"])
    emit({"user": user.public()}, as_json, f"added {user.username} ({user.name}, {role})")


@users.command("list")
@json_option
def users_list(as_json: bool) -> None:
    """The users who may sign in: username, name, role, and where each is kept."""
    with _users() as (_, users):
        everyone = users.all()
    rows = [{**u.public(), "source": u.source} for u in everyone]
    human = (
        "\n".join(f"{r['username']}  {r['name']}  {r['role']}  ({r['source']})" for r in rows)
        if rows
        else "no users yet: add one with `churn users add USERNAME --name '...' --role csm`"
    )
    emit({"users": rows, "count": len(rows)}, as_json, human)


@users.command("remove")
@click.argument("username")
@json_option
def users_remove(username: str, as_json: bool) -> None:
    """Remove a user from the store: their sessions end; what they did stays in the audit trail."""
    with _users() as (store, users):
        _not_declared(users, username)
        store.remove_user(username)
    emit({"removed": username}, as_json, f"removed {username}")


@users.command("set-password")
@click.argument("username")
@password_stdin
@json_option
def users_set_password(username: str, password_stdin: bool, as_json: bool) -> None:
    """Give a user a new password (prompted for twice, or read with --password-stdin); their sessions end."""
    from serving.workspace.auth import hash_password

    with _users() as (store, users):
        _not_declared(users, username)
        if store.user(username) is None:
            raise InputError(f"username {username!r}: no such user; expected one listed by `churn users list`")
        store.set_password(username, hash_password(_password(password_stdin)))
    emit({"username": username, "password_changed": True}, as_json, f"new password set for {username}")


@users.command("hash")
@password_stdin
@json_option
def users_hash(password_stdin: bool, as_json: bool) -> None:
    """Print a password's hash, for a user declared in the CHURN_WORKSPACE_USERS file."""
    from serving.workspace.auth import hash_password

    hashed = hash_password(_password(password_stdin))
    if as_json:
        emit({"password_hash": hashed}, True, "")
    else:
        sys.stdout.write(hashed + "\n")
        err.print("paste it as the user's password_hash in the CHURN_WORKSPACE_USERS file")


def demo_users(settings: Any, owner: str | None) -> list[dict]:
    """`churn demo`'s sign-ins in the demo's store: a CS lead and, when there is one, a CSM for `owner`
    (the owner with the most open escalations), each with a new random password (made again, with
    its name and role, on every demo run)."""
    import re
    import secrets

    from escalation.policy import load_policy
    from escalation.store import Store
    from serving.workspace.auth import hash_password

    wanted = [("lead", "Demo CS Lead", "cs_lead")]
    if owner:
        username = re.sub(r"[^a-z0-9]+", ".", owner.lower()).strip(".")[:64] or "csm"
        wanted.append((username, owner, "csm"))
    made = []
    with Store(settings.store_url, load_policy(settings.config_dir)) as store:
        for username, name, role in wanted:
            password = secrets.token_urlsafe(12)
            if store.user(username) is not None:  # an earlier demo's (or anyone's): made again as printed
                store.remove_user(username)
            store.add_user(username, name, role, hash_password(password))
            made.append({"username": username, "name": name, "role": role, "password": password})
    return made


def busiest_owner(settings: Any, people: set[str]) -> tuple[str | None, int]:
    """Of `people` (the CSM owners in the data: a queue's on-call owns some escalations too), the one
    with the most active escalations in the store, and how many; (None, 0) when none has one."""
    from collections import Counter

    from escalation.policy import load_policy
    from escalation.store import Store

    with Store(settings.store_url, load_policy(settings.config_dir)) as store:
        owners = Counter(row["owner"] for row in store.list_escalations() if row["owner"] in people)
    return owners.most_common(1)[0] if owners else (None, 0)


COMMANDS = (users,)
