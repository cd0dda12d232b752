"""ssh steps: run a command or a script on a remote host over SSH (paramiko).

How the remote side is started, and why:

- The exec request is `exec /bin/sh -c 'echo "$$"; exec SHELL -s'`.  OpenSSH makes the session's
  process a session leader (setsid), and `exec` keeps its pid, so the first line the step reads
  back is the remote process group id.  The script then arrives on stdin, wrapped in a function
  so the shell reads all of it before running any of it (a command that reads stdin cannot eat
  the rest of the script), and stdin is closed after it.  Neither the script nor the step's
  environment ever appears in an argv that `ps` on either host shows.
- On a stop or a timeout the step opens a second channel on the same connection and runs
  `kill -TERM -PGID`, waits up to KILL_GRACE_SEC for the group to end, then `kill -KILL -PGID`:
  nothing the step started is left running (sshd does not signal a command whose channel closes,
  which is what leaves processes behind with most SSH runners).
- The step's own environment (its `env:`, the DAG's `env:`, params, secrets, DAG_* variables,
  not the operator's inherited environment) is sent as SSH `env` requests, which the server
  applies where its `AcceptEnv` allows; the script then exports each variable that did not
  arrive, so the command sees all of them either way.
- The remote exit status is the step's; stdout and stderr are streamed to the step's logs as they
  arrive.  The connection comes from the per-process pool (ssh_connect.POOL) and is reused by the
  next ssh or sftp step to the same host.
"""

from __future__ import annotations

import codecs
import re
import select
import shlex
import time
from typing import Any, Mapping

from dagu.executors.base import Cancellation, StepIO, StepRequest, StepResult
from dagu.executors.ssh_connect import POOL, ConnectError, Settings, settings_from

KILL_GRACE_SEC = 2.0  # between TERM and KILL of the remote process group
PID_WAIT_SEC = 5.0  # how long a stop waits for the remote pid line before giving up on the kill
CHUNK = 32768
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def remote_shell(request: StepRequest) -> list[str]:
    """The shell that runs the script remotely: with.shell, else a shell the step names itself,
    else /bin/sh.  The DAG's `shell:` is for local steps and is not used (as upstream)."""
    given = request.config.get("shell")
    words: list[str] = []
    if isinstance(given, str) and given.strip():
        words = shlex.split(given)
    elif isinstance(given, list) and given:
        words = [str(w) for w in given]
    elif request.shell_named_by_step and request.shell:
        words = list(request.shell)
    words = words or ["/bin/sh"]
    words += [str(a) for a in request.config.get("shell_args") or ()]
    return [w for w in words if w != "-c"]


def step_env(request: StepRequest) -> dict[str, str]:
    """The variables the workflow gives the step; what the operator's environment passed through
    the sandbox (PATH, HOME, LANG, ...) stays on this host, and so does the SSH login password."""
    parent = request.parent_env
    bastion = request.config.get("bastion")
    logins = {request.config.get("password"), bastion.get("password") if isinstance(bastion, Mapping) else None}
    return {k: v for k, v in request.env.items()  # the login password is not handed to the remote side
            if _NAME.match(k) and (k not in parent or parent[k] != v) and v not in logins - {None, ""}}


def build_script(request: StepRequest, env: Mapping[str, str], errexit: bool) -> str:
    """The text fed to the remote shell's stdin."""
    lines = []
    for name, value in env.items():  # only those AcceptEnv did not already deliver
        quoted = shlex.quote(value)
        lines.append(f'[ "${{{name}+x}}" = x ] && [ "${name}" = {quoted} ] || export {name}={quoted}')
    body = []
    workdir = request.config.get("dir")
    if workdir:
        body.append(f"cd {shlex.quote(str(workdir))} || exit 1")
    if errexit:
        body.append("set -e")
    if request.script is not None:
        body.append(request.script.rstrip("\n"))
    else:
        body.extend(request.command)
    text = "\n".join(body)
    return "\n".join(lines) + f"\n__dagu_step() {{\n{text}\n}}\n__dagu_step\n"


def _kill_group(transport: Any, pgid: int, io: StepIO) -> None:
    """TERM the remote process group, then KILL it after the grace, from a second channel."""
    ticks = int(KILL_GRACE_SEC / 0.1)
    script = (f"kill -TERM -{pgid} 2>/dev/null || exit 0; i=0; "
              f"while [ $i -lt {ticks} ] && kill -0 -{pgid} 2>/dev/null; do sleep 0.1; i=$((i+1)); done; "
              f"kill -KILL -{pgid} 2>/dev/null; exit 0")
    try:
        chan = transport.open_session(timeout=5)
        chan.settimeout(KILL_GRACE_SEC + 5)
        chan.exec_command(f"exec /bin/sh -c {shlex.quote(script)}")
        chan.recv_exit_status()
        chan.close()
        io.err.write(f"dagu: stopped the remote process group {pgid} (TERM, then KILL after {KILL_GRACE_SEC:g}s)\n")
    except Exception as exc:  # the connection died: the remote side gets no signal from us
        io.err.write(f"dagu: could not signal the remote process group {pgid}: {exc}\n")


class _Reader:
    """Forward a channel's stdout/stderr to the step's logs, taking the pid line off stdout first."""

    def __init__(self, io: StepIO) -> None:
        self.io = io
        self.pgid: int | None = None
        self._head = b""
        self._out = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._err = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def out(self, data: bytes) -> None:
        if self.pgid is None:
            self._head += data
            if b"\n" not in self._head:
                return
            first, data = self._head.split(b"\n", 1)
            self._head = b""
            try:
                self.pgid = int(first.strip())
            except ValueError:
                self.pgid = 0  # not a shell we understand: no kill on stop, but keep its output
                data = first + b"\n" + data
        if data:
            self.io.out.write(self._out.decode(data))

    def err(self, data: bytes) -> None:
        self.io.err.write(self._err.decode(data))

    def drain(self, chan: Any) -> bool:
        got = False
        while chan.recv_ready():
            self.out(chan.recv(CHUNK))
            got = True
        while chan.recv_stderr_ready():
            self.err(chan.recv_stderr(CHUNK))
            got = True
        return got

    def finish(self) -> None:
        if self.pgid is None and self._head:
            self.io.out.write(self._out.decode(self._head))
        self.io.out.write(self._out.decode(b"", final=True))
        self.io.err.write(self._err.decode(b"", final=True))


def _run_on(transport: Any, s: Settings, request: StepRequest, io: StepIO, cancel: Cancellation) -> StepResult:
    env = step_env(request)
    shell = remote_shell(request)
    errexit = not (request.config.get("shell") or request.shell_named_by_step)
    chan = transport.open_session(timeout=s.timeout)
    for name, value in env.items():
        chan.set_environment_variable(name, value)
    inner = f'echo "$$"; exec {shlex.join(shell)} -s'
    chan.exec_command(f"exec /bin/sh -c {shlex.quote(inner)}")
    chan.sendall(build_script(request, env, errexit).encode("utf-8"))
    chan.shutdown_write()
    reader = _Reader(io)
    while True:
        if cancel.is_set():
            deadline = time.monotonic() + PID_WAIT_SEC
            while reader.pgid is None and not chan.exit_status_ready() and time.monotonic() < deadline:
                select.select([chan], [], [], 0.1)
                reader.drain(chan)
            if reader.pgid and not chan.exit_status_ready():
                _kill_group(transport, reader.pgid, io)
            reader.drain(chan)
            chan.close()
            reader.finish()
            return StepResult(exit_code=1, error=f"ssh {s.where}: stopped; the remote command was killed")
        select.select([chan], [], [], 0.2)
        reader.drain(chan)
        # done once the output ended and the status came, or the channel closed (a server may
        # close without an exit status: that is reported below, not waited for)
        finished = chan.closed or (chan.eof_received and chan.exit_status_ready())
        if finished and not chan.recv_ready() and not chan.recv_stderr_ready():
            break
        if not transport.is_active():
            reader.finish()
            return StepResult(exit_code=1, error=f"ssh {s.where}: the connection was lost while the command ran")
    code = chan.recv_exit_status()
    chan.close()
    reader.finish()
    if code < 0:
        return StepResult(exit_code=1, error=f"ssh {s.where}: the remote command ended without an exit status "
                                             "(killed by a signal?)")
    return StepResult(exit_code=code, error=None if code == 0 else f"ssh {s.where}: the remote command exited with {code}")


def run(request: StepRequest, io: StepIO, cancel: Cancellation) -> StepResult:
    import paramiko  # only when a step of this type runs

    if request.script is not None and request.command:
        return StepResult(exit_code=1, error="an ssh step takes `command` or `script`, not both")
    if request.script is None and not request.command:
        return StepResult(exit_code=1, error="an ssh step needs a `command` or a `script` to run remotely")
    try:
        s = settings_from(request.config, request.parent_env)
        with POOL.lease(s, io.err.write, cancel) as transport:
            try:
                return _run_on(transport, s, request, io, cancel)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                transport._dagu_broken = True
                return StepResult(exit_code=1, error=f"ssh {s.where}: the SSH session failed: "
                                                     f"{exc or type(exc).__name__}")
    except ConnectError as exc:
        return StepResult(exit_code=1, error=str(exc))
