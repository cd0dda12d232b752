"""`dagu start-all`: the scheduler and the web server as child processes of one supervisor.

Why child processes and not threads of one process: each part keeps its own failure.  A
server that leaks or wedges, or a scheduler killed by the OOM killer, is restarted alone
while the other keeps working, exactly as two systemd units would behave; and each child is
the ordinary `dagu scheduler` / `dagu server` command, so nothing here re-implements them.
The queue dispatcher is not a third part: the active scheduler dispatches the queues on
every turn of its loop (service/scheduling.py `dispatch_queues`).

Each child runs in its own process group (its own session), so a Ctrl-C at the terminal
reaches only this supervisor, which then stops the children in order: SIGTERM to each
group, SIGKILL after `GRACE_SEC`.  A child also gets SIGTERM from the kernel if this
supervisor dies without cleaning up (PR_SET_PDEATHSIG), so a `kill -9` of start-all leaves
no server holding the port.  Runs the scheduler started are detached by design (their own
sessions) and keep running across a restart of either part.

Restarts follow `RestartPolicy`: 1 s doubling to 30 s, back to 1 s once a part stayed up
60 s; five unexpected exits within 60 s and the part is given up (reported, the others keep
running).  A child that exits with status 2 (the CLI's usage error: bad arguments, the
port in use) would fail the same way again, so it is reported once and not restarted.
A second start-all on the same DAGU_HOME finds the scheduler lock held: its scheduler waits
as a standby (what `dagu scheduler` does), which is reported, not restarted.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import field
from typing import Callable, Mapping, Sequence, TextIO

from dagu.spec.records import dataclass

GRACE_SEC = 10.0  # SIGTERM, then this long before SIGKILL
EXIT_USAGE = 2  # a child's "bad request": restarting cannot help
RUNNING, WAITING, GIVEN_UP, FAILED, STOPPED = "running", "waiting", "given up", "failed", "stopped"


@dataclass(frozen=True)
class RestartPolicy:
    """When a part that exited unexpectedly is started again, and when it is given up."""

    first_delay: float = 1.0
    max_delay: float = 30.0
    healthy_after: float = 60.0  # up at least this long: the next crash starts again at first_delay
    crash_limit: int = 5  # this many unexpected exits ...
    crash_window: float = 60.0  # ... within this many seconds: give up


@dataclass
class Backoff:
    """One part's restart bookkeeping; pure (times are handed in), so it is tested without processes."""

    policy: RestartPolicy = field(default_factory=RestartPolicy)
    delay: float = 0.0  # the last delay used; 0 before the first crash
    crashes: list[float] = field(default_factory=list)  # when recent unexpected exits happened

    def exited(self, started_at: float, now: float) -> float | None:
        """The part started at `started_at` exited unexpectedly at `now`: seconds to wait before
        starting it again, or None when it crashed too often lately and should be given up."""
        p = self.policy
        self.crashes = [t for t in self.crashes if now - t < p.crash_window] + [now]
        if len(self.crashes) >= p.crash_limit:
            return None
        if now - started_at >= p.healthy_after or self.delay == 0.0:
            self.delay = p.first_delay
        else:
            self.delay = min(self.delay * 2, p.max_delay)
        return self.delay


def describe_exit(returncode: int) -> str:
    """'exit status 3' or 'killed by SIGKILL', as a user reads it."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


@dataclass
class Part:
    """One child command and its current process."""

    name: str
    argv: list[str]
    backoff: Backoff
    state: str = WAITING
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    restart_at: float = 0.0
    restarts: int = 0
    last_error: str = ""  # the child's last stderr line: what a give-up report quotes
    standby_noted: bool = False


class _Output:
    """Lines from one child stream, passed through with the part's name in front."""

    def __init__(self, part: Part, sink: TextIO, is_stderr: bool, width: int) -> None:
        self.part, self.sink, self.is_stderr = part, sink, is_stderr
        self.prefix = f"{part.name:<{width}} | "
        self.buffer = b""

    def feed(self, chunk: bytes) -> list[str]:
        """Write the complete lines in `chunk` (all of it at end of file, chunk == b''); return them."""
        self.buffer += chunk
        if chunk:
            *lines, self.buffer = self.buffer.split(b"\n")
        else:
            lines, self.buffer = ([self.buffer] if self.buffer else []), b""
        text = [line.decode("utf-8", "replace").rstrip("\r") for line in lines]
        for line in text:
            self.sink.write(self.prefix + line + "\n")
        if text:
            self.sink.flush()
        return text


def _pdeathsig() -> Callable[[], None] | None:
    """In the child between fork and exec: SIGTERM when this supervisor dies (Linux only)."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def arm() -> None:
        prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG

    return arm


class Supervisor:
    """Start the parts, pass their output through, restart or give up on them, stop them all."""

    def __init__(self, parts: Sequence[Part], environ: Mapping[str, str], out: TextIO, err: TextIO,
                 grace_sec: float = GRACE_SEC) -> None:
        self.parts = list(parts)
        self.environ = dict(environ)
        self.out, self.err = out, err
        self.grace_sec = grace_sec
        self.selector = selectors.DefaultSelector()
        self.width = max(len(p.name) for p in self.parts)
        self.signals: list[int] = []
        self._arm = _pdeathsig()

    def say(self, message: str) -> None:
        self.err.write(f"dagu start-all: {message}\n")
        self.err.flush()

    # -- children ----------------------------------------------------------------------

    def start(self, part: Part) -> None:
        try:
            proc = subprocess.Popen(part.argv, env=self.environ, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True, close_fds=True,
                                    preexec_fn=self._arm)
        except OSError as exc:
            part.state, part.last_error = FAILED, str(exc)
            self.say(f"{part.name} could not be started: {exc}; not restarted")
            return
        part.proc, part.state, part.started_at = proc, RUNNING, time.monotonic()
        part.standby_noted = False
        for stream, sink, is_err in ((proc.stdout, self.out, False), (proc.stderr, self.err, True)):
            assert stream is not None
            os.set_blocking(stream.fileno(), False)
            self.selector.register(stream, selectors.EVENT_READ, _Output(part, sink, is_err, self.width))
        again = f" (restart {part.restarts})" if part.restarts else ""
        self.say(f"{part.name} started, pid {proc.pid}{again}")

    def _read(self, key: selectors.SelectorKey) -> bool:
        """Pass on what the stream has now; False when it had nothing (or ended)."""
        output: _Output = key.data
        try:
            chunk = os.read(key.fd, 65536)
        except BlockingIOError:
            return False
        except OSError:
            chunk = b""
        if not chunk:
            self.selector.unregister(key.fileobj)
            key.fileobj.close()  # type: ignore[union-attr]
        for line in output.feed(chunk):
            if output.is_stderr and line.strip():
                output.part.last_error = line.strip()
            self._note(output.part, line)
        return bool(chunk)

    def _note(self, part: Part, line: str) -> None:
        """Say in our own words what a child's line means for the whole (the scheduler lock)."""
        if part.name == "scheduler" and "standby: scheduler pid" in line and not part.standby_noted:
            part.standby_noted = True
            holder = line.split("standby: scheduler pid", 1)[1].split()[0]
            self.say(f"the scheduler of this data dir already runs elsewhere (pid {holder}); this one waits "
                     "as a standby and takes over when that one stops (one scheduler per DAGU_HOME)")

    def _drain(self, part: Part) -> None:
        """Pass on what an exited child still had in its pipes, then close them (a pipe some
        grandchild still holds open is closed too: its later output is not this part's)."""
        for key in [k for k in self.selector.get_map().values() if k.data is not None and k.data.part is part]:
            while self._read(key):
                pass
            if key.fd in self.selector.get_map():
                key.data.feed(b"")
                self.selector.unregister(key.fileobj)
                key.fileobj.close()  # type: ignore[union-attr]

    def _exited(self, part: Part, now: float) -> None:
        assert part.proc is not None
        code = part.proc.returncode
        self._drain(part)
        how = describe_exit(code)
        if code == EXIT_USAGE:
            part.state = FAILED
            self.say(f"{part.name} failed ({how}): {part.last_error or 'see its output above'}; "
                     "not restarted, since it would fail the same way (the other parts keep running)")
            return
        delay = part.backoff.exited(part.started_at, now)
        if delay is None:
            part.state = GIVEN_UP
            p = part.backoff.policy
            self.say(f"{part.name} exited unexpectedly ({how}), {p.crash_limit} times within "
                     f"{p.crash_window:g} s: giving up on it (the other parts keep running)"
                     + (f"; its last error: {part.last_error}" if part.last_error else ""))
            return
        part.state, part.restart_at = WAITING, now + delay
        part.restarts += 1
        self.say(f"{part.name} exited unexpectedly ({how}); restarting it in {delay:g} s")

    # -- the loop ----------------------------------------------------------------------

    def run(self) -> int:
        """Supervise until SIGTERM/SIGINT (then 0), or until no part is left to run (then 1)."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        self.selector.register(wake_r, selectors.EVENT_READ, None)
        previous = {sig: signal.signal(sig, lambda signum, _frame: self.signals.append(signum))
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        old_wakeup = signal.set_wakeup_fd(wake_w)
        try:
            for part in self.parts:
                self.start(part)
            code = self._loop()
        finally:
            self.stop_all()
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.selector.unregister(wake_r)
            os.close(wake_r)
            os.close(wake_w)
        return code

    def _loop(self) -> int:
        while not self.signals:
            now = time.monotonic()
            waits = [p.restart_at - now for p in self.parts if p.state == WAITING]
            timeout = max(0.0, min([0.5, *waits]))
            for key, _mask in self.selector.select(timeout):
                if key.data is None:
                    try:
                        os.read(key.fd, 512)  # a signal's wake-up byte
                    except BlockingIOError:
                        pass
                else:
                    self._read(key)
            now = time.monotonic()
            for part in self.parts:
                if part.state == RUNNING and part.proc is not None and part.proc.poll() is not None:
                    self._exited(part, now)
                if part.state == WAITING and now >= part.restart_at and not self.signals:
                    self.start(part)
            if all(p.state in (GIVEN_UP, FAILED) for p in self.parts):
                self.say("no part is left running; exiting")
                return 1
        running = [p.name for p in self.parts if p.state == RUNNING]
        self.say(f"{signal.Signals(self.signals[0]).name}: "
                 + (f"stopping {' and '.join(running)}" if running else "nothing is running; exiting"))
        return 0

    def stop_all(self) -> None:
        """SIGTERM to every running part's process group, SIGKILL to what is left after the grace."""
        running = [p for p in self.parts if p.state == RUNNING and p.proc is not None]
        for part in running:
            _signal_group(part.proc, signal.SIGTERM)  # type: ignore[arg-type]
        deadline = time.monotonic() + self.grace_sec
        for part in running:
            assert part.proc is not None
            try:
                part.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"{part.name} (pid {part.proc.pid}) did not stop within {self.grace_sec:g} s: SIGKILL")
                _signal_group(part.proc, signal.SIGKILL)
                part.proc.wait()
            _signal_group(part.proc, signal.SIGKILL)  # anything it left in its group
            self._drain(part)
            part.state = STOPPED
        if running:
            self.say("stopped " + ", ".join(f"{p.name} ({describe_exit(p.proc.returncode)})"  # type: ignore[union-attr]
                                            for p in running))


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # its own session: the group id is its pid
    except (ProcessLookupError, PermissionError):
        pass


def start_all(self_argv: Sequence[str], host: str, port: int, dags_dir: str | None,
              environ: Mapping[str, str], out: TextIO = sys.stdout, err: TextIO = sys.stderr,
              policy: RestartPolicy | None = None) -> int:
    """Run `dagu scheduler` and `dagu server` under one supervisor until SIGTERM/SIGINT.

    The caller has refused what the server would refuse (a host beyond loopback with no user)."""
    dags = ["--dags", dags_dir] if dags_dir else []
    policy = policy or RestartPolicy()
    parts = [
        Part("scheduler", [*self_argv, "scheduler", *dags], Backoff(policy)),
        Part("server", [*self_argv, "server", "--host", host, "--port", str(port), *dags], Backoff(policy)),
    ]
    return Supervisor(parts, environ, out, err).run()
