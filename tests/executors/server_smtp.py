"""A real SMTP server for the mail step's and the notifications' tests: aiosmtpd's Controller on
127.0.0.1 (a free port, in this test process), recording every message it accepts.

It speaks plain SMTP, STARTTLS or implicit TLS with a self-signed certificate made by openssl for
127.0.0.1, and can require a login (AUTH PLAIN/LOGIN) checked against one user and password.
"""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from tests.servers import free_port, need


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    login: str | None

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]


@dataclass
class Sink:
    received: list[Received] = field(default_factory=list)
    logins: dict[int, str] = field(default_factory=dict)  # id(session) -> the user it logged in as

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                      envelope.original_content or envelope.content,
                                      self.logins.get(id(session))))
        return "250 OK"


@dataclass
class Smtp:
    port: int
    sink: Sink
    controller: Any

    def stop(self) -> None:
        self.controller.stop()


def make_cert(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate valid for 127.0.0.1 and localhost (cert, key)."""
    openssl = need("openssl")
    cert, key = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    return cert, key


def start_smtp(*, tls: str | None = None, cert: tuple[Path, Path] | None = None,
               login: tuple[str, str] | None = None) -> Smtp:
    """tls: None (plain), "starttls" (offered and required before AUTH) or "ssl" (implicit)."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    sink = Sink()
    kwargs: dict[str, Any] = {}
    context = None
    if tls:
        assert cert is not None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    if tls == "starttls":
        kwargs.update(tls_context=context, require_starttls=True)
    if tls == "ssl":
        kwargs.update(ssl_context=context)
    if login is not None:
        def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
            ok = isinstance(data, LoginPassword) and (data.login.decode(), data.password.decode()) == login
            if ok:
                sink.logins[id(session)] = login[0]
            return AuthResult(success=ok, handled=False)
        kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=tls is not None)
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, server_hostname="localhost", **kwargs)
    controller.start()
    return Smtp(port, sink, controller)


class Blackhole:
    """Accepts connections and never answers: an SMTP server that hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_cert(tmp_path_factory.mktemp("smtp-cert"))
