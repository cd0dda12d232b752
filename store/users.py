"""The users and API tokens of the web UI: `$DAGU_HOME/users.json`, and the server's session key.

Why one JSON file: it is small, a person can read it with `cat` to see who has which role,
and it holds no secret that is usable as is: passwords and tokens are kept only as salted
hashes (service/users.py makes and checks them).  It is still written with mode 0600 (a hash
is an offline guessing target), always whole and atomically (temp file, fsync, rename), under
an flock so two `dagu user add` at once cannot lose one another's entry.  The web server reads
it again whenever it changes (stat), so a user added while the server runs counts at once.

Layout (spec: format 1):

    {"format": 1,
     "users":  {"NAME": {"role": "admin", "password": "scrypt$...", "created_at": 1.0}},
     "tokens": {"NAME": {"id": "a1b2c3d4", "role": "operator", "hash": "pbkdf2$...", "created_at": 1.0}}}
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from contextlib import contextmanager
from dataclasses import field
from typing import Iterator

from dagu.spec.records import dataclass
from dagu.store.journal import StoreError, storage_error, write_all
from dagu.store.runs import write_atomic

USERS_FILE = "users.json"
SECRET_FILE = "web-secret"
FORMAT = 1
PRIVATE = 0o600


@dataclass
class UserEntry:
    role: str
    password: str  # the salted hash, never the password
    created_at: float


@dataclass
class TokenEntry:
    id: str  # the public part of the token, to find its entry
    role: str
    hash: str  # the salted hash of the secret part
    created_at: float


@dataclass
class Accounts:
    users: dict[str, UserEntry] = field(default_factory=dict)
    tokens: dict[str, TokenEntry] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT,
                           "users": {n: vars(u) for n, u in sorted(self.users.items())},
                           "tokens": {n: vars(t) for n, t in sorted(self.tokens.items())}}, indent=2) + "\n"


def users_path(home: str) -> str:
    return os.path.join(home, USERS_FILE)


def _parse(path: str, text: str) -> Accounts:
    try:
        raw = json.loads(text)
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise ValueError(f"not a format-{FORMAT} users file")
        return Accounts({str(n): UserEntry(**u) for n, u in (raw.get("users") or {}).items()},
                        {str(n): TokenEntry(**t) for n, t in (raw.get("tokens") or {}).items()})
    except (ValueError, TypeError) as exc:
        raise StoreError(f"{path}: damaged users file ({exc}); fix or remove it") from None


def load(home: str) -> Accounts:
    """The accounts (empty when the file does not exist)."""
    path = users_path(home)
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        return Accounts()
    except OSError as exc:
        raise storage_error(path, exc) from None
    return _parse(path, text)


def stat_key(home: str) -> tuple:
    """What changes when the file does (a reader re-reads it only then)."""
    try:
        st = os.stat(users_path(home))
    except OSError:
        return ()
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def write_private(path: str, text: str) -> None:
    """The users file's write: the one atomic write, 0600 from the temp file's creation."""
    write_atomic(path, text, make_dirs=True, mode=PRIVATE)


@contextmanager
def editing(home: str) -> Iterator[Accounts]:
    """The accounts to change under an exclusive lock; written back (0600) when the block ends
    without an exception."""
    path = users_path(home)
    try:
        os.makedirs(home, exist_ok=True)
        lock = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, PRIVATE)
    except OSError as exc:
        raise storage_error(path, exc) from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        accounts = load(home)
        yield accounts
        write_private(path, accounts.to_json())
    finally:
        os.close(lock)


def session_secret(home: str) -> bytes:
    """The key that signs session cookies: made once (32 random bytes, mode 0600) and kept, so
    sessions outlive a restart of the server; delete the file to log everybody out.  Made in a
    temp file and hard-linked into place, so two servers starting at once agree on one key."""
    path = os.path.join(home, SECRET_FILE)
    try:
        with open(path, "rb") as fh:
            key = fh.read()
    except FileNotFoundError:
        key = b""
    except OSError as exc:
        raise storage_error(path, exc) from None
    if key:
        if len(key) < 32:
            raise StoreError(f"{path}: too short to be the session key; remove it and restart")
        return key
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        os.makedirs(home, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE)
        try:
            write_all(fd, secrets.token_bytes(32))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another server made it first: use theirs
        finally:
            os.unlink(tmp)
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise storage_error(path, exc) from None
