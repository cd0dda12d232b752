"""Sending one e-mail over SMTP: the one code path of the `mail` step and of the run's notifications.

Why shared: a notification that works differently from a mail step (another TLS rule, another
way of reporting a refused login) is a notification nobody has tested.  Both build a `Message`
and an `SmtpServer` and call `send`, which either returns or raises `MailError` with a message
naming host:port, what failed and a hint; never a traceback, never the password.

TLS, as upstream decides it unless `tls:` says otherwise: `auto` uses implicit TLS on port 465,
else STARTTLS when the server offers it and a login is configured (upstream's rule), else plain
text; `starttls` requires STARTTLS, `ssl` implicit TLS, `none` never encrypts.  Certificates are
always verified, against the system store or `ca_file`.
"""

from __future__ import annotations

import mimetypes
import os
import socket
import ssl
from dataclasses import field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Callable, Mapping, Sequence

from dagu.spec.records import dataclass

TLS_MODES = ("auto", "starttls", "ssl", "none")
DEFAULT_TIMEOUT_SEC = 30.0
MAX_ATTACHMENTS_BYTES = 25 * 1024 * 1024  # what common relays accept; more is refused before connecting


class MailError(Exception):
    """The mail could not be built or sent; the message is meant for the step's error."""


@dataclass
class SmtpServer:
    host: str
    port: int
    username: str = ""
    password: str = ""
    tls: str = "auto"
    ca_file: str | None = None
    timeout_sec: float = DEFAULT_TIMEOUT_SEC

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class Attachment:
    filename: str
    data: bytes


@dataclass
class Message:
    sender: str
    to: list[str]
    subject: str = ""
    text: str | None = None
    html: str | None = None
    cc: list[str] = field(default_factory=list)
    bcc: list[str] = field(default_factory=list)  # envelope only, never a header
    attachments: list[Attachment] = field(default_factory=list)

    def recipients(self) -> list[str]:
        return [*self.to, *self.cc, *self.bcc]


def addresses(value: Any) -> list[str]:
    """`to:`/`cc:`/`bcc:` as upstream takes them: one address, a list, or a comma-separated string."""
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return [_clean(str(v)).strip() for v in items if str(v).strip()]


def _clean(text: str) -> str:
    """No header injection: line breaks never reach a header."""
    return text.replace("\r", " ").replace("\n", " ")


def server_from(config: Mapping[str, Any]) -> SmtpServer:
    """The SMTP server of a mail step's (or the DAG's `smtp:`) block; MailError when incomplete."""
    host = str(config.get("host") or "").strip()
    if not host:
        raise MailError("no SMTP host: set `host` in the step's with: or the DAG's smtp: block")
    tls = str(config.get("tls") or "auto").lower()
    if tls not in TLS_MODES:
        raise MailError(f"tls {tls!r} is not one of {', '.join(TLS_MODES)}")
    raw_port = config.get("port")
    try:
        port = int(raw_port) if raw_port not in (None, "") else (465 if tls == "ssl" else 25)
    except (TypeError, ValueError):
        raise MailError(f"SMTP port {raw_port!r} is not a number") from None
    if not 0 < port < 65536:
        raise MailError(f"SMTP port {port} is out of range")
    timeout = config.get("timeout")
    return SmtpServer(host=host, port=port, username=str(config.get("username") or ""),
                      password=str(config.get("password") or ""), tls=tls,
                      ca_file=str(config["ca_file"]) if config.get("ca_file") else None,
                      timeout_sec=float(timeout) if timeout else DEFAULT_TIMEOUT_SEC)


def read_attachments(paths: Sequence[str], cwd: str, limit: int = MAX_ATTACHMENTS_BYTES) -> list[Attachment]:
    """Files to attach, relative to `cwd`; MailError naming a file that is missing or the total cap."""
    found: list[Attachment] = []
    total = 0
    for name in paths:
        path = os.path.join(cwd, os.path.expanduser(str(name)))
        try:
            size = os.path.getsize(path)
            if total + size > limit:
                raise MailError(f"attachments are over {limit} bytes ({path} is {size}); "
                                "send a link or a smaller file")
            with open(path, "rb") as fh:
                data = fh.read(limit - total + 1)
        except OSError as exc:
            raise MailError(f"attachment {path}: {exc.strerror or exc}") from None
        total += len(data)
        found.append(Attachment(os.path.basename(path), data))
    return found


def build(message: Message) -> EmailMessage:
    """The MIME message: text and/or HTML (alternatives), then attachments; no Bcc header."""
    mail = EmailMessage()
    mail["From"] = _clean(message.sender)
    mail["To"] = ", ".join(message.to)
    if message.cc:
        mail["Cc"] = ", ".join(message.cc)
    mail["Subject"] = _clean(message.subject)
    mail["Date"] = formatdate(localtime=True)
    mail["Message-ID"] = make_msgid(domain="dagu.local")
    text, html = message.text, message.html
    if text is not None and html is None and text.lstrip().lower().startswith("<!doctype html"):
        text, html = None, text  # upstream sends a message that starts as an HTML document as HTML
    if text is not None:
        mail.set_content(text)
        if html is not None:
            mail.add_alternative(html, subtype="html")
    elif html is not None:
        mail.set_content(html, subtype="html")
    else:
        mail.set_content("")
    for item in message.attachments:
        kind = mimetypes.guess_type(item.filename)[0] or "application/octet-stream"
        maintype, subtype = kind.split("/", 1)
        mail.add_attachment(item.data, maintype=maintype, subtype=subtype, filename=item.filename)
    return mail


def _context(server: SmtpServer) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=server.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise MailError(f"ca_file {server.ca_file}: cannot be read as a CA bundle ({exc})") from None


def send(server: SmtpServer, message: Message,
         on_cancel: Callable[[Callable[[], None]], None] | None = None) -> dict[str, Any]:
    """Send `message`; returns what was sent.  `on_cancel` registers a callback that closes the
    connection (a stop or timeout interrupts a blocked read at once)."""
    import smtplib

    if not message.to and not message.cc and not message.bcc:
        raise MailError("no recipients: set `to` (and optionally cc, bcc)")
    if not message.sender:
        raise MailError("no sender: set `from`")
    mail = build(message)
    where = server.where
    client: smtplib.SMTP | None = None
    try:
        if server.tls == "ssl":
            client = smtplib.SMTP_SSL(server.host, server.port, timeout=server.timeout_sec,
                                      context=_context(server))
        else:
            client = smtplib.SMTP(server.host, server.port, timeout=server.timeout_sec)
        if on_cancel is not None:
            on_cancel(_closer(client))
        client.ehlo()
        wants_tls = server.tls == "starttls" or (
            server.tls == "auto" and bool(server.username) and client.has_extn("starttls"))
        if wants_tls:
            if not client.has_extn("starttls"):
                raise MailError(f"{where}: the server does not offer STARTTLS (tls: starttls); "
                                "use tls: ssl for an implicit-TLS port (465) or tls: none")
            client.starttls(context=_context(server))
            client.ehlo()
        if server.username:
            if not client.has_extn("auth"):
                raise MailError(f"{where}: the server offers no AUTH{'' if wants_tls else ' over plain text'}; "
                                "hint: most servers offer it only after STARTTLS (tls: starttls)")
            client.login(server.username, server.password)
        refused = client.send_message(mail, from_addr=message.sender, to_addrs=message.recipients())
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            pass
    except MailError:
        _close(client)
        raise
    except smtplib.SMTPAuthenticationError as exc:
        _close(client)
        raise MailError(f"{where}: authentication as {server.username!r} failed ({exc.smtp_code} "
                        f"{_text(exc.smtp_error)}); check username and password") from None
    except smtplib.SMTPRecipientsRefused as exc:
        _close(client)
        raise MailError(f"{where}: every recipient was refused ({_refusals(exc.recipients)})") from None
    except smtplib.SMTPSenderRefused as exc:
        _close(client)
        raise MailError(f"{where}: sender {exc.sender!r} refused ({exc.smtp_code} {_text(exc.smtp_error)})") from None
    except smtplib.SMTPResponseException as exc:
        _close(client)
        raise MailError(f"{where}: the server said {exc.smtp_code} {_text(exc.smtp_error)}") from None
    except (smtplib.SMTPException, OSError) as exc:
        _close(client)
        raise MailError(describe_os_error(where, exc)) from None
    return {"sent": True, "from": message.sender, "to": message.to, "cc": message.cc, "bcc": len(message.bcc),
            "subject": message.subject, "message_id": mail["Message-ID"],
            "refused": sorted(refused) if refused else []}


def describe_os_error(where: str, exc: BaseException) -> str:
    """A connection-level failure as `host:port: what; hint`."""
    if isinstance(exc, ConnectionRefusedError):
        return f"{where}: connection refused; is the SMTP server running and is the port right?"
    if isinstance(exc, socket.gaierror):
        return f"{where}: DNS lookup failed ({exc.strerror or exc}); check the host name"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"{where}: TLS certificate verification failed ({exc.verify_message or exc}); "
                "hint: give the server's CA with ca_file")
    if isinstance(exc, ssl.SSLError):
        return (f"{where}: TLS handshake failed ({exc.reason or exc}); hint: tls: ssl is for implicit-TLS "
                "ports (465), tls: starttls for 587/25")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"{where}: timed out; is the host reachable and the port an SMTP port?"
    if exc.__class__.__name__ == "SMTPServerDisconnected":
        return (f"{where}: the server closed the connection ({exc}); hint: an implicit-TLS port needs tls: ssl, "
                "or the send was stopped")
    text = getattr(exc, "strerror", None) or str(exc) or exc.__class__.__name__
    return f"{where}: {text}"


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _refusals(recipients: Mapping[str, Any]) -> str:
    return "; ".join(f"{addr}: {code} {_text(msg)}" for addr, (code, msg) in recipients.items())


def _closer(client: Any) -> Callable[[], None]:
    def close() -> None:
        sock = getattr(client, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv
            except OSError:
                pass
        _close(client)
    return close


def _close(client: Any) -> None:
    if client is not None:
        try:
            client.close()
        except Exception:
            pass
