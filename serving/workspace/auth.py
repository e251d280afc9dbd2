"""Who may use the workspace and what they may do: users and roles, password hashes, the key that
signs session cookies, CSRF tokens. The standard library only (hashlib.scrypt, hmac, secrets) and
no web framework, so `churn users` hashes a password with the code the sign-in checks it with.

Passwords: scrypt (RFC 7914) with a random 16-byte salt per password, stored as one
self-describing string `scrypt$<n>$<r>$<p>$<salt>$<hash>` (base64), so a later change of cost
still reads the hashes made before it; compared in constant time. Users live in the store's
`users` table (`churn users add`) and may also be declared in the YAML file CHURN_WORKSPACE_USERS
names (with hashes from `churn users hash`); a username declared there is that file's, whatever
the store holds.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import secrets
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import InputError
from escalation.store.schema import ROLES

#: roles that may change anything (acknowledge, resolve, follow-ups, feedback); a viewer reads only
ACTING_ROLES = ("csm", "cs_lead", "admin")
#: roles that see every owner's queue and the book view
LEAD_ROLES = ("cs_lead", "admin")

#: scrypt's cost, Django's default for its scrypt hasher: 16 MiB and about 50 ms a hash on one core.
#: OWASP asks for N=2^17 (128 MiB, 8 times the time), a lot for a 2-core server that also scores; a
#: hash records its own cost, so raising N later leaves every stored hash readable
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_BYTES = 2**14, 8, 1, 32
#: the largest cost a stored hash may ask for (a corrupted or hostile hash must not exhaust memory)
MAX_SCRYPT_N = 2**20
SALT_BYTES = 16
#: NIST SP 800-63B: at least 8 characters; a cap, so a huge password cannot be a denial of service
MIN_PASSWORD, MAX_PASSWORD = 8, 1024
#: where the session key is kept when CHURN_WORKSPACE_SECRET is not set (under DATA_DIR)
SECRET_FILE = "workspace_secret"


@dataclass(frozen=True)
class User:
    username: str
    name: str
    role: str
    password_hash: str
    #: "store", or the file that declares the user
    source: str = "store"

    @property
    def can_act(self) -> bool:
        return self.role in ACTING_ROLES

    @property
    def is_lead(self) -> bool:
        return self.role in LEAD_ROLES

    def public(self) -> dict:
        """What templates and `churn users list` show: never the hash."""
        return {"username": self.username, "name": self.name, "role": self.role}


# -- passwords ------------------------------------------------------------------------------------


def check_password(password: str) -> str:
    """`password` if it is acceptable, else an InputError saying what is expected."""
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InputError(f"password: expected {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    if password != password.strip():
        raise InputError("password: expected no spaces at its start or end (a copy-paste slip)")
    return password


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def hash_password(password: str) -> str:
    """A new hash of an acceptable password, with a fresh random salt."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(check_password(password), salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_BYTES)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=length, maxmem=2 * 128 * r * n + 2**20)


def parse_hash(encoded: str) -> tuple[int, int, int, bytes, bytes]:
    """(n, r, p, salt, digest) of a stored hash; ValueError when it is not one this module made."""
    scheme, n, r, p, salt, digest = encoded.split("$")
    n_, r_, p_ = int(n), int(r), int(p)
    if scheme != "scrypt" or not (1 < n_ <= MAX_SCRYPT_N and n_ & (n_ - 1) == 0 and 0 < r_ <= 32 and 0 < p_ <= 16):
        raise ValueError(f"not an scrypt hash this module accepts: {scheme}, n={n_}, r={r_}, p={p_}")
    return n_, r_, p_, base64.b64decode(salt, validate=True), base64.b64decode(digest, validate=True)


def verify_password(password: str, encoded: str) -> bool:
    """Whether `password` is the one `encoded` was made from (constant-time comparison; a
    malformed hash or an overlong password is simply False)."""
    try:
        n, r, p, salt, digest = parse_hash(encoded)
    except (ValueError, TypeError, AttributeError):
        return False
    if not isinstance(password, str) or len(password) > MAX_PASSWORD or not digest:
        return False
    return hmac.compare_digest(_scrypt(password, salt, n, r, p, len(digest)), digest)


@functools.cache
def _decoy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def authenticate(users: Users, username: str, password: str) -> User | None:
    """The user these credentials sign in, or None. An unknown username costs the same hash as a
    wrong password, so the time taken does not tell which it was."""
    user = users.get(username) if username else None
    if user is None:
        verify_password(password, _decoy_hash())
        return None
    return user if verify_password(password, user.password_hash) else None


def stamp(password_hash: str) -> str:
    """A short digest of a user's current hash, kept in their session: a new password (or removing
    the user) ends the sessions signed in with the old one."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


# -- users ----------------------------------------------------------------------------------------


def read_declared(path: Path) -> dict[str, User]:
    """The users a CHURN_WORKSPACE_USERS file declares, checked: `users:` a list of mappings with
    username, name, role and password_hash (made by `churn users hash`, never a password)."""
    import yaml

    from escalation.store.users import USERNAME

    where = f"CHURN_WORKSPACE_USERS {path}"
    try:
        document = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"{where}: no such file; expected a YAML file with a `users:` list") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{where}: not valid YAML ({str(exc).splitlines()[0]})") from None
    entries = document.get("users") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise InputError(f"{where}: expected a mapping with a `users:` list, one mapping per user")
    out: dict[str, User] = {}
    fields = ("username", "name", "role", "password_hash")
    for i, entry in enumerate(entries):
        at = f"{where}: users[{i}]"
        if not isinstance(entry, dict):
            raise InputError(f"{at}: expected a mapping with {', '.join(fields)}")
        missing = [f for f in fields if not isinstance(entry.get(f), str) or not entry[f].strip()]
        unknown = sorted(set(entry) - set(fields))
        if missing or unknown:
            raise InputError(
                f"{at}: "
                + "; ".join(
                    [f"{f}: expected a non-empty string" for f in missing]
                    + [f"{f}: unknown key; expected only {', '.join(fields)}" for f in unknown]
                )
            )
        username, role = entry["username"], entry["role"]
        if not USERNAME.fullmatch(username):
            raise InputError(f"{at}.username {username!r}: expected letters, digits, '.', '_', '@' or '-'")
        if role not in ROLES:
            raise InputError(f"{at}.role {role!r}: expected one of {', '.join(ROLES)}")
        try:
            parse_hash(entry["password_hash"])
        except (ValueError, TypeError):
            raise InputError(
                f"{at}.password_hash: not a password hash; expected the output of `churn users hash` (never a password)"
            ) from None
        if username in out:
            raise InputError(f"{at}.username {username!r}: declared twice; expected each username once")
        out[username] = User(username, entry["name"].strip(), role, entry["password_hash"], source=str(path))
    return out


class Users:
    """The workspace's users: those the settings file declares (re-read when it changes), then
    those in the store."""

    def __init__(self, store: Any, declared: Path | None = None):
        self.store = store
        self.path = Path(declared) if declared is not None else None
        self._lock = threading.Lock()
        self._declared: dict[str, User] = {}
        self._seen: tuple[int, int] | None = None
        self.declared()  # a bad file is an error at start-up, not at the first sign-in

    def declared(self) -> dict[str, User]:
        if self.path is None:
            return {}
        with self._lock:
            try:
                info = self.path.stat()
                seen = (info.st_mtime_ns, info.st_size)
            except FileNotFoundError:
                seen = None
            if seen is None or seen != self._seen:
                self._declared, self._seen = read_declared(self.path), seen
            return self._declared

    def get(self, username: str) -> User | None:
        declared = self.declared().get(username)
        if declared is not None:
            return declared
        row = self.store.user(username)
        return None if row is None else User(row["username"], row["name"], row["role"], row["password_hash"])

    def all(self) -> list[User]:
        declared = self.declared()
        stored = [
            User(r["username"], r["name"], r["role"], r["password_hash"])
            for r in self.store.users()
            if r["username"] not in declared
        ]
        return sorted([*declared.values(), *stored], key=lambda u: u.username)


# -- the session key and CSRF tokens --------------------------------------------------------------


def session_secret(secret: str | None, data_dir: Path) -> str:
    """The key that signs session cookies: CHURN_WORKSPACE_SECRET, else DATA_DIR/workspace_secret,
    made once (mode 0600) by whichever worker comes first; every worker then reads the same key,
    so each accepts the cookies the others set."""
    if secret:
        return secret
    path = Path(data_dir) / SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        made = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
        descriptor = os.open(made, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_urlsafe(48) + "\n")
            try:
                os.link(made, path)  # atomic, and never replaces a key another worker made first
            except FileExistsError:
                pass
        finally:
            made.unlink(missing_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise InputError(
            f"{path}: the workspace's session key is readable by others (mode {mode:04o}); expected mode 0600 "
            f"(chmod 600 {path}), or set CHURN_WORKSPACE_SECRET"
        )
    key = path.read_text().strip()
    if len(key) < 32:
        raise InputError(f"{path}: expected a key of at least 32 characters; delete the file and a new one is made")
    return key


def new_token() -> str:
    return secrets.token_urlsafe(32)


def same_token(given: object, expected: object) -> bool:
    """Whether a form's CSRF token is the session's (constant time; anything missing is False)."""
    if not isinstance(given, str) or not isinstance(expected, str) or not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
