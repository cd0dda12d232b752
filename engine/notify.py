"""Notification e-mails: `mail_on: {failure, success}` with `error_mail`/`info_mail`, and a step's
`mail_on_error: true`, sent through the same SMTP code as the `mail` step (executors/smtp_send).

A hook (engine/hooks.py), so the step loop knows nothing about mail.  Why it can never fail or
hang the run: each mail is sent on its own daemon thread with a bounded socket timeout; the run's
end waits for them at most that long; a mail that could not be sent is a warning line in the
run's `logs/notify.log` (and on the supervisor's stderr), never a change of the run's status.
Everything the mail says comes from events the journal hook has already masked, and the log
files it attaches were masked when their attempts ended.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Mapping

from dagu.engine.run_context import RunContext
from dagu.store.state import FAILED, PARTIAL, SUCCEEDED, RunStatus

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any

SEND_TIMEOUT_SEC = 10.0  # per mail, unless the smtp: block says `timeout`
ATTACH_TAIL_BYTES = 1 << 20  # of each log file: the end, where the error is
_VAR = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def wanted(ctx: RunContext) -> bool:
    """Whether this DAG asks for any notification (otherwise no hook is subscribed).  Without an
    `smtp:` block it still does: each mail is then a warning saying the host is missing."""
    settings = ctx.dag.settings
    mail_on = settings.get("mail_on") or {}
    return bool(settings.get("error_mail") or settings.get("info_mail")) and (
        bool(mail_on.get("failure") or mail_on.get("success"))
        or any(step.mail_on_error for step in ctx.dag.steps))


class NotifyHook:
    """Sends the run's summary when it ends (and error_mail when a mail_on_error step fails)."""

    def __init__(self, ctx: RunContext, status: RunStatus) -> None:
        self.ctx = ctx
        self.status = status
        self.steps = {step.id: step for step in ctx.dag.steps}
        self.pending: list[tuple[str, Mapping[str, Any], str]] = []  # (kind, mail block, subject)
        self.threads: list[threading.Thread] = []
        self.finished = False

    # ------------------------------------------------------------------ RunHook

    def event(self, event: dict[str, Any]) -> None:
        kind = event.get("ev")
        settings = self.ctx.dag.settings
        if kind == "step_finished" and event.get("status") == FAILED and not event.get("handler"):
            step = self.steps.get(str(event.get("step")))
            if step is not None and step.mail_on_error and settings.get("error_mail"):
                self.pending.append(("error", settings["error_mail"], f"step {step.id} failed"))
        elif kind == "run_finished":
            mail_on = settings.get("mail_on") or {}
            final = event.get("status")
            if final == FAILED and mail_on.get("failure") and settings.get("error_mail"):
                self.pending.append(("error", settings["error_mail"], ""))
            elif final in (SUCCEEDED, PARTIAL) and mail_on.get("success") and settings.get("info_mail"):
                self.pending.append(("info", settings["info_mail"], ""))
            self.finished = True

    def flush(self) -> None:
        """Start the pending sends; at the run's end, wait for every send (bounded)."""
        pending, self.pending = self.pending, []
        for kind, block, what in pending:
            thread = threading.Thread(target=self._send, args=(kind, block, what), name="notify-mail", daemon=True)
            thread.start()
            self.threads.append(thread)
        if self.finished:
            deadline = time.monotonic() + self._timeout() + 5
            for thread in self.threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            self.threads = [t for t in self.threads if t.is_alive()]
            if self.threads:
                self._warn(f"{len(self.threads)} notification mail(s) still unsent when the run ended; given up")
                self.threads = []

    # ------------------------------------------------------------------ sending

    def _expand(self, value: Any) -> Any:
        """`${VAR}` in the smtp:/mail blocks, from the run's variables and environment."""
        if isinstance(value, dict):
            return {k: self._expand(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._expand(v) for v in value]
        if not isinstance(value, str):
            return value

        def one(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(2)
            found = self.ctx.run_vars.get(name, self.ctx.base_env.get(name))
            return match.group(0) if found is None else found
        return _VAR.sub(one, value)

    def _timeout(self) -> float:
        smtp = self.ctx.dag.settings.get("smtp") or {}
        try:
            return float(smtp.get("timeout") or SEND_TIMEOUT_SEC)
        except (TypeError, ValueError):
            return SEND_TIMEOUT_SEC

    def _send(self, kind: str, block: Mapping[str, Any], what: str) -> None:
        from dagu.executors.smtp_send import MailError, Message, addresses, send, server_from

        try:
            smtp = dict(self._expand(self.ctx.dag.settings.get("smtp") or {}))
            if smtp.get("password"):
                self.ctx.masker.add(str(smtp["password"]))
            smtp["timeout"] = self._timeout()
            server = server_from(smtp)
            mail = self._expand(dict(block))
            subject = " ".join(p for p in (str(mail.get("prefix") or "").strip(), self.ctx.dag.name,
                                           f"({what or self.status.status})") if p)
            message = Message(sender=str(mail.get("from") or ""), to=addresses(mail.get("to")), subject=subject,
                              text=summary(self.status, what),
                              attachments=self._logs() if mail.get("attach_logs") else [])
            send(server, message)
        except MailError as exc:
            self._warn(f"the {kind} notification mail was not sent: {exc}")
        except Exception as exc:  # a notification must never take the run down
            self._warn(f"the {kind} notification mail was not sent: {exc.__class__.__name__}: {exc}")

    def _logs(self) -> list[Any]:
        from dagu.executors.smtp_send import Attachment

        found = []
        for state in [*self.status.steps.values(), *self.status.handlers.values()]:
            last = state.last
            for path in (last.stdout, last.stderr) if last else ():
                if path and os.path.isfile(path) and os.path.getsize(path) > 0:
                    found.append(Attachment(os.path.basename(path), _tail(path)))
        return found

    def _warn(self, text: str) -> None:
        line = self.ctx.masker.text(f"{_now()} warning: {text}")
        run = self.ctx.run
        if run is not None:
            try:
                with open(os.path.join(run.logs, "notify.log"), "a", encoding="utf-8") as fh:
                    fh.write(line + "\n")
            except OSError:
                pass
        try:
            sys.stderr.write(f"dagu: {line}\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


def _tail(path: str) -> bytes:
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > ATTACH_TAIL_BYTES:
            fh.seek(size - ATTACH_TAIL_BYTES)
            return b"[... the first %d bytes are left out]\n" % (size - ATTACH_TAIL_BYTES) + fh.read()
        return fh.read()


def _now() -> str:
    import datetime  # here only: mail needs it
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _when(at: float | None) -> str:
    import datetime  # here only: mail needs it
    return datetime.datetime.fromtimestamp(at).astimezone().isoformat(timespec="seconds") if at else "-"


def summary(status: RunStatus, what: str = "") -> str:
    """The run as plain text: what upstream's summary table says (run, status, each step)."""
    lines = [f"DAG:      {status.dag}", f"Run ID:   {status.run_id}", f"Status:   {status.status}",
             f"Started:  {_when(status.started_at)}", f"Finished: {_when(status.finished_at or time.time())}"]
    if what:
        lines.append(f"Event:    {what}")
    if status.params:
        lines.append(f"Params:   {' '.join(status.params)}")
    if status.error:
        lines.append(f"Error:    {status.error}")
    lines += ["", "Steps:"]
    for number, state in enumerate([*status.steps.values(), *status.handlers.values()], 1):
        last = state.last
        error = (last.error if last and last.error else state.reason) or ""
        attempts = f", attempt {last.number}" if last and last.number > 1 else ""
        lines.append(f"  {number}. {state.name}: {state.status}{attempts}" + (f" - {error}" if error else ""))
    return "\n".join(lines) + "\n"

