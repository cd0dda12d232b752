"""A real HTTP server for the http step's tests: the standard library's ThreadingHTTPServer on
127.0.0.1 (plain, or TLS with a self-signed certificate made by openssl), recording what it got.

Routes: /echo (the request as JSON), /status/N (status N, body "boom N details"), /flaky (503
until its third call), /redirect/N (N redirects, then /echo), /loop (redirects to itself),
/big/N (N bytes of 'x'), /slow (answers after 30 s, or when the client goes away).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest


@dataclass
class Recorder:
    requests: list[dict[str, Any]] = field(default_factory=list)
    hits: dict[str, int] = field(default_factory=dict)
    slow_started: threading.Event = field(default_factory=threading.Event)
    slow_ended: threading.Event = field(default_factory=threading.Event)


def _handler(rec: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, ctype: str = "text/plain", headers: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _route(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path = self.path.split("?", 1)[0]
            rec.hits[path] = rec.hits.get(path, 0) + 1
            seen = {"method": self.command, "path": self.path, "headers": dict(self.headers.items()),
                    "body": body.decode("utf-8", "replace")}
            auth = self.headers.get("Authorization") or ""
            if auth.startswith("Basic "):
                import base64

                seen["credentials"] = base64.b64decode(auth[6:]).decode()  # echoed in clear
            rec.requests.append(seen)
            parts = path.strip("/").split("/")
            if parts[0] == "echo":
                self._send(200, json.dumps(seen).encode(), "application/json", {"X-Multi": "a"})
            elif parts[0] == "status":
                self._send(int(parts[1]), f"boom {parts[1]} details".encode())
            elif parts[0] == "flaky":
                if rec.hits[path] < 3:
                    self._send(503, b"not yet")
                else:
                    self._send(200, b"finally")
            elif parts[0] == "redirect":
                left = int(parts[1])
                self._send(302, b"", headers={"Location": f"/redirect/{left - 1}" if left > 1 else "/echo"})
            elif parts[0] == "loop":
                self._send(302, b"", headers={"Location": "/loop"})
            elif parts[0] == "big":
                size = int(parts[1])
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(size))
                self.end_headers()
                chunk = b"x" * 65536
                while size > 0:
                    self.wfile.write(chunk[:size])
                    size -= 65536
            elif parts[0] == "slow":
                rec.slow_started.set()
                self.connection.settimeout(0.1)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:  # until the client goes away
                    try:
                        if self.connection.recv(1) == b"":
                            break
                    except TimeoutError:
                        continue
                    except OSError:
                        break
                rec.slow_ended.set()
            else:
                self._send(404, b"no such route")

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _route

    return Handler


@dataclass
class HttpServer:
    server: ThreadingHTTPServer
    rec: Recorder
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_port}"

    @property
    def port(self) -> int:
        return self.server.server_port


def start(cert: tuple[Path, Path] | None = None) -> HttpServer:
    rec = Recorder()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(rec))
    server.daemon_threads = True
    scheme = "http"
    if cert is not None:
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return HttpServer(server, rec, scheme)


def self_signed(where: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made by openssl (skips when it is missing)."""
    openssl = shutil.which("openssl")
    if not openssl:
        pytest.skip("openssl is not installed (apt-get install openssl)")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key
