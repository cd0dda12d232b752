"""The hashes dagu records (a source file's sha256 in its plan, the plan cache's keys, a
cgroup's name), without loading OpenSSL.

Why: `import hashlib` loads `_hashlib` and with it libcrypto, 3-4 ms of every
`dagu validate` and `dagu start` on the bench host, for a few short digests.
CPython's own C implementations give the same bytes; the standard library's
`random` module takes `_sha512` the same way.  A Python built without them falls
back to hashlib.
"""

from __future__ import annotations

try:
    from _sha1 import sha1 as _sha1
    from _sha256 import sha256 as _sha256
except ImportError:  # pragma: no cover - every CPython we ship has them
    from hashlib import sha1 as _sha1, sha256 as _sha256


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of data, as 64 hex digits."""
    return _sha256(data).hexdigest()


def sha1_hex(data: bytes) -> str:
    """The SHA-1 of data, as 40 hex digits: for names, never for integrity."""
    return _sha1(data).hexdigest()
