"""Users, roles and API tokens: add, list, remove; check a password or a token.

Roles, each allowed what the one before it is:

- viewer: reads everything (DAGs, runs, logs, queues, system);
- operator: also starts, enqueues, stops, retries, dequeues, approves / rejects / pushes back;
- admin: also edits workflow files and manages users.

Why these hashes: passwords are guessable, so they get scrypt (memory-hard, in the standard
library) with a 16-byte salt per entry.  A token's secret is 32 random bytes that no one can
guess, so a fast salted PBKDF2 suffices to make a leaked users file useless, and checking a
token on every API call costs well under a millisecond.  Every comparison of secrets is
`hmac.compare_digest`, and an unknown user name costs the same scrypt as a known one, so the
time of a failed login does not tell which names exist.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time

from dagu.spec.records import dataclass
from dagu.service import BadRequest, ServiceError
from dagu.store import users as store
from dagu.store.journal import StoreError

VIEWER, OPERATOR, ADMIN = "viewer", "operator", "admin"
ROLES = (VIEWER, OPERATOR, ADMIN)  # in order of what each may do
NAME_MAX = 64
NAME_RULE = (f"use 1 to {NAME_MAX} letters, digits, '_', '.', '@' or '-', not starting with '.' or '-'")
MIN_PASSWORD = 8
TOKEN_PREFIX = "dagu_"

_NAME = re.compile(r"[A-Za-z0-9_@][A-Za-z0-9_.@-]*")
_SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}
_PBKDF2_ROUNDS = 1000
_DUMMY_SALT = b"\0" * 16


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a user (by password), a token, or the local user of open mode."""

    name: str
    role: str
    kind: str  # "user", "token" or "local"
    fingerprint: str = ""  # changes when the user's password does (sessions made before end)


@dataclass
class AccountInfo:
    name: str
    role: str
    created_at: float
    kind: str = "user"


def allows(role: str, needed: str) -> bool:
    """Whether `role` may do what needs `needed`."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def check_name(name: object, what: str = "user name") -> str:
    if not isinstance(name, str) or len(name) > NAME_MAX or not _NAME.fullmatch(name):
        raise BadRequest(f"{what} {name!r} is not allowed: {NAME_RULE}")
    return name


def check_role(role: object) -> str:
    if role not in ROLES:
        raise BadRequest(f"role {role!r}: choose one of {', '.join(ROLES)}")
    return role  # type: ignore[return-value]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${_b64(salt)}${_b64(digest)}"


def _hash_secret(secret: str, salt: bytes | None = None) -> str:
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode("utf-8"), salt, _PBKDF2_ROUNDS)
    return f"pbkdf2_sha256${_PBKDF2_ROUNDS}${_b64(salt)}${_b64(digest)}"


def verify_hash(secret: str, stored: str) -> bool:
    """Whether `secret` matches a stored scrypt or pbkdf2 hash (constant-time compare)."""
    try:
        kind, *fields = stored.split("$")
        if kind == "scrypt":
            n, r, p, salt, want = fields
            got = hashlib.scrypt(secret.encode("utf-8"), salt=base64.b64decode(salt), n=int(n), r=int(r),
                                 p=int(p), dklen=32, maxmem=128 * 1024 * 1024)
        elif kind == "pbkdf2_sha256":
            rounds, salt, want = fields
            got = hashlib.pbkdf2_hmac("sha256", secret.encode("utf-8"), base64.b64decode(salt), int(rounds))
        else:
            return False
        return hmac.compare_digest(got, base64.b64decode(want))
    except (ValueError, TypeError):
        return False


def fingerprint(stored_hash: str) -> str:
    """A short value derived from a stored hash (not reversible to it), kept in a session."""
    return hmac.new(stored_hash.encode("utf-8"), b"dagu-session", hashlib.sha256).hexdigest()[:16]


def session_key(home: str) -> bytes:
    """The web server's key for signing session cookies (made once, 0600, under the data dir)."""
    try:
        return store.session_secret(home)
    except StoreError as exc:
        raise ServiceError(str(exc)) from None


def _edit(home: str):
    return store.editing(home)


def add_user(home: str, name: str, password: str, role: str, replace: bool = False) -> None:
    """Add a user (or, with `replace`, set an existing one's password and role)."""
    check_name(name)
    check_role(role)
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise BadRequest(f"the password must have at least {MIN_PASSWORD} characters")
    hashed = hash_password(password)
    try:
        with _edit(home) as accounts:
            if name in accounts.users and not replace:
                raise ServiceError(f"user {name!r} exists (dagu user add {name} --replace sets a new password)")
            accounts.users[name] = store.UserEntry(role, hashed, time.time())
    except StoreError as exc:
        raise ServiceError(str(exc)) from None


def remove_user(home: str, name: str) -> None:
    check_name(name)
    try:
        with _edit(home) as accounts:
            if accounts.users.pop(name, None) is None:
                raise ServiceError(f"no user {name!r}")
    except StoreError as exc:
        raise ServiceError(str(exc)) from None


def create_token(home: str, name: str, role: str) -> str:
    """A new API token; the returned string is the only time it exists in clear."""
    check_name(name, "token name")
    check_role(role)
    token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    try:
        with _edit(home) as accounts:
            if name in accounts.tokens:
                raise ServiceError(f"token {name!r} exists (revoke it first: dagu token revoke {name})")
            accounts.tokens[name] = store.TokenEntry(token_id, role, _hash_secret(secret), time.time())
    except StoreError as exc:
        raise ServiceError(str(exc)) from None
    return f"{TOKEN_PREFIX}{token_id}_{secret}"


def revoke_token(home: str, name: str) -> None:
    check_name(name, "token name")
    try:
        with _edit(home) as accounts:
            if accounts.tokens.pop(name, None) is None:
                raise ServiceError(f"no token {name!r}")
    except StoreError as exc:
        raise ServiceError(str(exc)) from None


def list_accounts(home: str) -> list[AccountInfo]:
    """Users, then tokens, by name (roles and dates only: no hash)."""
    try:
        accounts = store.load(home)
    except StoreError as exc:
        raise ServiceError(str(exc)) from None
    return ([AccountInfo(n, u.role, u.created_at) for n, u in sorted(accounts.users.items())]
            + [AccountInfo(n, t.role, t.created_at, "token") for n, t in sorted(accounts.tokens.items())])


class Directory:
    """The accounts as a long-running server sees them: re-read whenever the file changes, so
    `dagu user add` / `remove` / `token revoke` count at the next request without a restart."""

    def __init__(self, home: str) -> None:
        self.home = home
        self._key: tuple | None = None
        self._accounts = store.Accounts()
        self._lock = threading.Lock()

    def accounts(self) -> store.Accounts:
        """The accounts; ServiceError when the file is damaged or unreadable."""
        key = store.stat_key(self.home)
        with self._lock:
            if key != self._key:
                try:
                    self._accounts = store.load(self.home) if key else store.Accounts()
                except StoreError as exc:
                    raise ServiceError(str(exc)) from None
                self._key = key
            return self._accounts

    def configured(self) -> bool:
        """Whether any user or token exists (then every request must say who it is)."""
        accounts = self.accounts()
        return bool(accounts.users or accounts.tokens)

    def user(self, name: str) -> Principal | None:
        entry = self.accounts().users.get(name)
        if entry is None:
            return None
        return Principal(name, entry.role, "user", fingerprint(entry.password))

    def login(self, name: str, password: str) -> Principal | None:
        """The user if the password is theirs; an unknown name costs the same scrypt."""
        entry = self.accounts().users.get(name) if isinstance(name, str) else None
        if entry is None:
            hashlib.scrypt(str(password).encode("utf-8"), salt=_DUMMY_SALT, dklen=32, **_SCRYPT)
            return None
        if not verify_hash(password, entry.password):
            return None
        return Principal(name, entry.role, "user", fingerprint(entry.password))

    def token(self, token: str) -> Principal | None:
        """The token's principal, or None for a malformed, unknown or revoked token."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        token_id, _, secret = token[len(TOKEN_PREFIX):].partition("_")
        for name, entry in self.accounts().tokens.items():
            if hmac.compare_digest(entry.id, token_id):
                return Principal(name, entry.role, "token") if verify_hash(secret, entry.hash) else None
        return None
