"""The http step's helpers: cancellable sockets, the body file, status codes and failure messages.

Kept apart from http.py so that module reads as the request's story; nothing
here imports `requests` at module level (the compiler may load the catalogue's
modules' neighbours, and `dagu compile` must not pay for a client).
"""

from __future__ import annotations

import os
import socket
import stat
import tempfile
import threading
from typing import Any
from urllib.parse import urlsplit


def target(url: str) -> str:
    """host:port of a URL, the default port filled in, for every message."""
    try:
        parts = urlsplit(url)
        port = parts.port or {"https": 443, "http": 80}.get(parts.scheme.lower(), 0)
    except ValueError:
        return url
    return f"{parts.hostname or '?'}:{port}"


def expected_codes(given: Any) -> frozenset[int]:
    """The status codes that mean success: with.expected_status, else any 2xx (as upstream)."""
    if given is None:
        return frozenset(range(200, 300))
    if isinstance(given, int):
        return frozenset({given})
    return frozenset(int(code) for code in given)


class Sockets:
    """The sockets one step's request opened, so a stop can shut them down from another thread:
    closing a requests Session does not interrupt a read already blocked on a socket."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._closed = False

    def add(self, sock: Any) -> None:
        with self._lock:
            self._socks.append(sock)
            closed = self._closed
        if closed:
            self._shut(sock)

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            socks = list(self._socks)
        for sock in socks:
            self._shut(sock)

    @staticmethod
    def _shut(sock: Any) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except (OSError, ValueError):
            pass


def tracking_adapter(sockets: Sockets) -> Any:
    """A requests adapter whose connections report their socket to `sockets` once connected."""
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class TrackedHTTP(HTTPConnection):
        def connect(self) -> None:
            super().connect()
            sockets.add(self.sock)

    class TrackedHTTPS(HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            sockets.add(self.sock)

    class Pool(HTTPConnectionPool):
        ConnectionCls = TrackedHTTP

    class TLSPool(HTTPSConnectionPool):
        ConnectionCls = TrackedHTTPS

    adapter = HTTPAdapter(max_retries=0)
    adapter.poolmanager.pool_classes_by_scheme = {"http": Pool, "https": TLSPool}
    return adapter


class AtomicFile:
    """The response body's file: written beside its final name, renamed into place on success.
    A FIFO, device or directory at that name is refused (opening a FIFO would block the step)."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):
                raise OSError(f"{path} exists and is not a regular file (a FIFO, device or directory)")
        except FileNotFoundError:
            pass
        parent = os.path.dirname(path) or "."
        os.makedirs(parent, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=parent)
        self._fh = os.fdopen(fd, "wb")
        self._done = False

    def write(self, chunk: bytes) -> None:
        self._fh.write(chunk)

    def commit(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self._tmp, self.path)
        self._done = True

    def discard(self) -> None:
        if not self._done:
            self._fh.close()
            try:
                os.unlink(self._tmp)
            except OSError:
                pass


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop()
        if item is None or any(item is s for s in seen):
            continue
        seen.append(item)
        todo += [item.__cause__, item.__context__, *[a for a in getattr(item, "args", ()) if
                                                    isinstance(a, BaseException)]]
        reason = getattr(item, "reason", None)
        if isinstance(reason, BaseException):
            todo.append(reason)
    return seen


def describe_failure(exc: BaseException, method: str, url: str, where: str, kwargs: dict[str, Any],
                     max_redirects: int) -> str:
    """One line for a request that got no response: what failed at host:port, and a hint."""
    import requests

    chain = _chain(exc)
    names = {type(e).__name__ for e in chain}
    text = " ".join(str(e) for e in chain)
    timeout = kwargs.get("timeout") or (None, None)
    if isinstance(exc, OSError) and not isinstance(exc, requests.RequestException):
        return f"http: {exc}"
    if isinstance(exc, requests.exceptions.TooManyRedirects):
        return f"http: {method} {url}: more than {max_redirects} redirects (with.max_redirects); " \
               "the server may redirect in a loop"
    if isinstance(exc, requests.exceptions.SSLError) or "SSLError" in names or "SSLCertVerificationError" in names:
        reason = next((str(e) for e in chain if type(e).__name__ == "SSLCertVerificationError"), None) or \
            str(exc).split("(Caused by", 1)[-1].strip(" ()")
        return f"http: TLS error talking to {where}: {reason[:300]}; if the server's certificate is from " \
               "a private CA, give it as with.ca_bundle (PEM); skip_tls_verify: true turns checking off"
    if "NameResolutionError" in names or any(isinstance(e, socket.gaierror) for e in chain):
        return f"http: DNS lookup failed for {where}: the host name does not resolve; check the URL's host"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"http: connecting to {where} timed out after {timeout[0]:g}s; is the host reachable " \
               "(firewall, wrong address)?"
    if isinstance(exc, requests.exceptions.ReadTimeout) or "ReadTimeoutError" in names:
        return f"http: {where} did not answer within {timeout[1]:g}s (with.timeout); raise with.timeout " \
               "if the server is slow"
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "Connection refused" in text:
        return f"http: connection refused by {where}; is the server up and the port right?"
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                        requests.exceptions.InvalidSchema)):
        return f"http: bad URL {url!r}: {exc}; give a full http:// or https:// URL"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return f"http: connection to {where} failed: {str(exc)[:300]}; is the server up?"
    return f"http: {method} {where} failed: {type(exc).__name__}: {str(exc)[:300]}"
