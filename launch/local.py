"""The local launcher: a run's supervisor is a process on this host, forked or spawned.

Every supervisor is its own detached `dagu ...` process (new session, stdin from
/dev/null, output appended to a launch log), so a crash of one run, of the
scheduler or of the caller leaves the others running.  What it runs is the
command line `launch/base.py` builds for a run request.

Runs are started by a *zygote*: one child `dagu zygote` (the frozen binary
or `python -m dagu`) that has imported what `dagu start` needs and forks a process per run
(`Zygote`, `zygote_main`); the scheduler uses it, one-off callers spawn.  Why: a fresh interpreter importing dagu costs about
0.15 s of CPU before its run records a start, so 100 runs due at the same
minute queued for two cores for seconds (tests/bench/scheduler_bench.py); a
fork of the warm zygote costs about 10 ms.  The forked run is in its own
session exactly like a spawned one.  The zygote serves only while dagu's
source files are unchanged (it says "stale" and is replaced), leaves after
`ZYGOTE_IDLE_SEC` without work, and any failure of it falls back to spawning.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import field
from typing import Any, Callable, Mapping, Sequence

from dagu.spec.records import dataclass
from dagu.launch.base import LaunchedRun, RunRequest, request_argv


ZYGOTE_IDLE_SEC = 600.0  # a zygote with nothing to do this long exits (its ~25 MB go back)
ZYGOTE_REPLY_SEC = 10.0  # longer than this to start or to fork: give up on it, spawn instead
ZYGOTE_RETRY_SEC = 60.0  # after a zygote failed, spawn runs this long before trying another


@dataclass
class ForkedRun:
    """A run asked of the zygote.  Requests are pipelined (the scheduler does not wait for the
    fork), so the pid comes later; until then it counts as running.  Not our child: watched
    by pid and start time (psutil).  If the zygote fails before forking it, it is spawned."""
    args: list[str]
    asked: float = field(default_factory=time.monotonic)
    answered: bool = False
    process: Any = None  # psutil.Process; None when the run was over before we looked
    spawned: subprocess.Popen | None = None  # the fallback
    launcher: "LocalLauncher | None" = field(default=None, repr=False)

    def poll(self) -> int | None:
        """None while it runs (the Popen protocol `_reap` uses); its exit code is not ours to see."""
        if not self.answered and self.launcher is not None:
            self.launcher._collect()
        if self.spawned is not None:
            return self.spawned.poll()
        if not self.answered:
            return None
        import psutil

        try:
            if self.process is not None and self.process.is_running() \
                    and self.process.status() != psutil.STATUS_ZOMBIE:
                return None
        except psutil.Error:
            pass
        return 0


class Zygote:
    """The scheduler's side of a zygote: one JSON line per request, one per reply, over pipes."""

    def __init__(self, argv: Sequence[str], environ: Mapping[str, str], log_path: str) -> None:
        with open(log_path, "ab") as log:  # `dagu zygote`: the same program the runs would be
            self.proc = subprocess.Popen(
                [*argv, "zygote"], env=dict(environ), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=log, start_new_session=True, close_fds=True, bufsize=0)
        self.buffer = b""

    def reply(self, timeout: float) -> dict[str, Any] | None:
        """The next line from the zygote; None when none came within timeout; {} when it is gone."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = max(0.0, deadline - time.monotonic())
            if not select.select([self.proc.stdout], [], [], left)[0]:
                return None
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                return {}
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        try:
            return json.loads(line)
        except ValueError:
            return {}

    def send(self, args: Sequence[str], log_path: str) -> bool:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps({"argv": list(args), "log": log_path}) + "\n").encode())
            return True
        except OSError:
            return False

    def close(self) -> None:
        """Closing its stdin ends it; a zygote that does not listen is killed."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class LocalLauncher:
    """Supervisor processes on this host: forked from a warm zygote when `zygote` is set (the
    scheduler, which starts many), else spawned as `dagu ...` (a one-off: the CLI, a web request).
    Either way the supervisor is in its own session with stdin from /dev/null and its output
    appended to `log_path`, so it outlives its caller."""

    def __init__(self, self_argv: Sequence[str], environ: Mapping[str, str], log_path: str,
                 zygote: bool = True) -> None:
        self.self_argv = list(self_argv)
        self.environ = dict(environ)
        self.log_path = log_path
        self.use_zygote = zygote
        self._zygote: Zygote | None = None
        self._zygote_retry_at = 0.0
        self._asked: list[ForkedRun] = []  # sent to the zygote, not yet answered, oldest first

    # -- the Launcher interface ----------------------------------------------------

    def argv(self, request: RunRequest) -> list[str]:
        return request_argv(self.self_argv, request)

    def launch(self, request: RunRequest) -> LaunchedRun:
        args = request_argv([], request)
        if self.use_zygote and not request.env:
            forked = self._fork(args)
            if forked is not None:
                return forked
        return self._spawn([*self.self_argv, *args], dict(request.env))

    def stop(self, pid: int) -> bool:
        """SIGTERM to a supervisor: it stops its steps (signal_on_stop, then SIGKILL) and records
        the run aborted.  False when the process is gone."""
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        return True

    def close(self) -> None:
        """End the zygote (runs it forked keep running: they are in their own sessions)."""
        if self._zygote is not None:
            self._zygote.close()
            self._zygote = None

    # -- the zygote ------------------------------------------------------------------

    def _fork(self, args: Sequence[str]) -> ForkedRun | None:
        """Ask the zygote to fork `dagu ARGS`; None when there is no working zygote (the caller spawns)."""
        self._collect()
        run = ForkedRun(list(args), launcher=self)
        return run if self._ask(run) else None

    def _ask(self, run: ForkedRun) -> bool:
        """Send the run to the zygote, starting one if need be; False when none works."""
        if self._zygote is None:
            if time.monotonic() < self._zygote_retry_at:  # argv is dagu itself: `argv zygote` exists
                return False
            os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
            self._zygote = Zygote(self.self_argv, self.environ, self.log_path)
            if not (self._zygote.reply(ZYGOTE_REPLY_SEC) or {}).get("ready"):
                self._zygote_failed()
                return False
        if not self._zygote.send(run.args, self.log_path):
            self._zygote_failed()
            return False
        run.asked = time.monotonic()
        self._asked.append(run)
        return True

    def _collect(self) -> None:
        """Take the answers that have come.  A stale zygote is replaced (once per call) and gets the
        unanswered runs again; a failed or hung one is dropped and they are spawned instead (a run
        forked after all fails on its existing run id rather than running twice)."""
        replaced = False
        while self._asked and self._zygote is not None:
            reply = self._zygote.reply(0.0)
            if reply is None:
                if time.monotonic() - self._asked[0].asked <= ZYGOTE_REPLY_SEC:
                    return
                reply = {}  # hung
            if isinstance(reply.get("pid"), int):
                run = self._asked.pop(0)
                run.answered = True
                import psutil

                try:
                    run.process = psutil.Process(reply["pid"])
                except psutil.Error:  # already over
                    pass
                continue
            stale = reply.get("stale") is True and not replaced
            unanswered, self._asked = self._asked, []
            self._zygote_failed(retry=not stale)
            replaced = replaced or stale
            for run in unanswered:
                if not (stale and self._ask(run)):
                    run.answered = True
                    run.spawned = self._spawn([*self.self_argv, *run.args], {})

    def _zygote_failed(self, retry: bool = True) -> None:
        if self._zygote is not None:
            self._zygote.close()
            self._zygote = None
        if retry:
            self._zygote_retry_at = time.monotonic() + ZYGOTE_RETRY_SEC

    def _spawn(self, argv: Sequence[str], extra_env: Mapping[str, str]) -> subprocess.Popen:
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        with open(self.log_path, "ab") as log:
            return subprocess.Popen(list(argv), env={**self.environ, **extra_env}, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=log, start_new_session=True, close_fds=True)


# -- the zygote's own side (runs in its process) ---------------------------------


def _send(message: dict[str, Any]) -> None:
    os.write(1, (json.dumps(message) + "\n").encode())


def _sources() -> dict[str, int]:
    """mtime of every loaded dagu module's file: a change means runs would get old code."""
    out = {}
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if (name == "dagu" or name.startswith("dagu.")) and path:
            try:
                out[path] = os.stat(path).st_mtime_ns
            except OSError:
                out[path] = -1
    return out


def _reap(_signum: int, _frame: Any) -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def _run_child(entry: Callable[[list[str]], int], args: list[str], log_path: str) -> None:
    """In the fork: become what `dagu ARGS` spawned by _spawn would be, run it, never return."""
    code = 3
    try:
        os.setsid()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDONLY)
        log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # the zygote's pipes are 0 and 1: nothing else is open
        sys.argv = ["dagu", *args]
        code = entry(args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: B036 - the fork must never return into the zygote's loop
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code if isinstance(code, int) else 1)


def zygote_main(entry: Callable[[list[str]], int], preload: Sequence[str] = ()) -> None:
    """`dagu zygote`: say ready, then fork one run per request until EOF, idle or stale.

    `entry` is what a forked child runs with the request's arguments: the `dagu` command's
    own main, handed in by the CLI (launch sits below the CLI and never imports it).  The
    caller imports what every run needs before calling; `preload` names modules a run may
    import lazily (the command executor, retention), loaded here if present."""
    import importlib

    for name in preload:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    sources = _sources()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # its own session; it ends when the scheduler does
    signal.signal(signal.SIGCHLD, _reap)
    _send({"ready": True, "pid": os.getpid()})
    buffer = b""
    while True:
        if not select.select([0], [], [], ZYGOTE_IDLE_SEC)[0]:
            return
        chunk = os.read(0, 65536)
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            request = json.loads(line)
            if _sources() != sources:
                _send({"stale": True})
                return
            try:
                pid = os.fork()
            except OSError as exc:
                _send({"error": str(exc)})
                continue
            if pid == 0:
                signal.signal(signal.SIGINT, signal.default_int_handler)
                _run_child(entry, request["argv"], request["log"])
            _send({"pid": pid})
