"""The `mail` step: send one e-mail (text and/or HTML, to/cc/bcc, attachments) over SMTP.

The server comes from the DAG's `smtp:` block (merged under the step's `with:` at compile time,
step keys winning) or the step's own host/port/username/password.  Sending is
`smtp_send.send`, the same code the run's notifications use.  The output is a JSON record of
what was sent, so `${step.output.message_id}` works.
"""

from __future__ import annotations

import json

from dagu.executors.base import Cancellation, StepIO, StepRequest, StepResult
from dagu.executors.smtp_send import MailError, Message, addresses, read_attachments, send, server_from


def _message(request: StepRequest) -> Message:
    config = request.config
    text = config.get("message")
    return Message(
        sender=str(config.get("from") or ""),
        to=addresses(config.get("to")), cc=addresses(config.get("cc")), bcc=addresses(config.get("bcc")),
        subject=str(config.get("subject") or ""),
        text=None if text is None else str(text),
        html=None if config.get("html") is None else str(config["html"]),
        attachments=read_attachments([str(p) for p in config.get("attachments") or ()], request.cwd))


def run(request: StepRequest, io: StepIO, cancel: Cancellation) -> StepResult:
    try:
        server = server_from(request.config)
        message = _message(request)
    except MailError as exc:
        return StepResult(exit_code=1, error=str(exc))
    if request.timeout_sec and not request.config.get("timeout"):
        server.timeout_sec = min(server.timeout_sec, float(request.timeout_sec))
    hidden = f", {len(message.bcc)} bcc" if message.bcc else ""
    io.err.write(f"mail: sending {message.subject!r} from {message.sender} to {', '.join(message.to)}"
                 f"{' cc ' + ', '.join(message.cc) if message.cc else ''}{hidden} "
                 f"via {server.where} (tls: {server.tls})"
                 f"{', ' + str(len(message.attachments)) + ' attachment(s)' if message.attachments else ''}\n")
    try:
        sent = send(server, message, cancel.on_cancel)
    except MailError as exc:
        if cancel.is_set():
            return StepResult(exit_code=1, error=f"mail to {server.where} stopped before it was sent")
        return StepResult(exit_code=1, error=str(exc))
    if sent["refused"]:
        io.err.write(f"mail: refused by the server: {', '.join(sent['refused'])}\n")
    io.err.write(f"mail: sent ({sent['message_id']})\n")
    text = json.dumps(sent, ensure_ascii=False)
    io.out.write(text + "\n")
    return StepResult(exit_code=0, output=text)
