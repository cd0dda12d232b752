"""A run's watchdog: when its supervisor dies (kill -9, the OOM killer), it kills the run's step processes.

Why a process of its own and not PR_SET_PDEATHSIG in every step: the death signal has to be
armed in the child between fork and exec, and any code there makes CPython fork instead of
vfork, which cost ~2 ms per step; and it only ever reached the step's leader, not what the
leader started.  One watchdog per run costs one fork, when the run starts its first process,
and on the supervisor's death it kills every step tree whole: each step cgroup of the run
(`cgroup.kill`), or, without cgroups, the process group of each step leader still running.

How it learns of the death: the supervisor holds the only write end of a pipe the watchdog
reads.  The kernel closes it when the supervisor dies, however it dies, so end-of-file means
"the supervisor is gone".  A clean close writes `bye` first.  Step processes never inherit the
write end (spawned with close_fds; a forked sub-supervisor replaces every inherited descriptor).
Leaders are announced as `+pid start` lines and withdrawn as `-pid` (session mechanism only:
with cgroups the run's cgroup directory says what to kill).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

from dagu.process.lazy_log import LazyLogger

log = LazyLogger(__name__)

_BYE = b"bye\n"


class Watchdog:
    """The supervisor's end: start once, announce leaders, close on a clean end."""

    def __init__(self, kill_run: Callable[[dict[int, int]], None]) -> None:
        self._kill_run = kill_run  # runs in the watchdog after the supervisor died: leaders -> start ticks
        self._fd: int | None = None
        self._pid: int | None = None
        self._failed = False

    @property
    def pid(self) -> int | None:
        return self._pid

    def ensure(self) -> None:
        """Start the watchdog if it is not running yet (never raises: without it, what a dead
        supervisor leaves is still killed by the next start of the DAG or `dagu retry`)."""
        if self._pid is not None and self._fd is None:  # dismissed, yet a process starts: a new one
            self._reap()
        if self._pid is not None or self._failed:
            return
        try:
            read_end, write_end = os.pipe()
        except OSError as exc:
            self._failed = True
            log.warning("no watchdog for this run (%s)", exc.strerror)
            return
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(read_end)
            os.close(write_end)
            self._failed = True
            log.warning("no watchdog for this run (%s)", exc.strerror)
            return
        if pid == 0:  # pragma: no cover - the watchdog process
            _watch(read_end, write_end, self._kill_run)
        os.close(read_end)
        self._fd, self._pid = write_end, pid

    def leader(self, pid: int, start: int) -> None:
        self._send(f"+{pid} {start}\n".encode())

    def gone(self, pid: int) -> None:
        self._send(f"-{pid}\n".encode())

    def dismiss(self) -> None:
        """The run will start no more processes: the watchdog leaves, killing nothing, while the
        supervisor writes the run's end.  `close` then reaps it, usually gone by then: its exit
        (~0.8 ms) overlaps that writing instead of following it (issue 17)."""
        if self._fd is not None:
            self._send(_BYE)
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        """A clean end: the watchdog leaves without killing anything, and is reaped."""
        self.dismiss()
        self._reap()

    def _reap(self) -> None:
        if self._pid is not None:
            try:
                os.waitpid(self._pid, 0)
            except ChildProcessError:
                pass
            self._pid = None

    def _send(self, data: bytes) -> None:
        if self._fd is None:
            return
        try:
            os.write(self._fd, data)  # a few bytes: atomic, and the pipe is drained continuously
        except OSError:
            pass


def _watch(read_end: int, write_end: int, kill_run: Callable[[dict[int, int]], None]) -> None:
    """The watchdog's life (never returns).  It ignores the terminal's signals, which reach the
    whole foreground process group: a Ctrl-C is for the supervisor, which ends the run itself."""
    code = 0
    try:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGTSTP):
            signal.signal(sig, signal.SIG_IGN)
        signal.set_wakeup_fd(-1)
        os.close(write_end)
        _only_descriptor(read_end)
        leaders: dict[int, int] = {}
        pending = b""
        while True:
            chunk = os.read(read_end, 4096)
            if not chunk:
                kill_run(leaders)  # end of file: the supervisor died
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if _apply(lines, leaders):
                break
    except BaseException:  # noqa: B036 - the watchdog must never run the supervisor's code
        code = 1
    os._exit(code)


def _apply(lines: list[bytes], leaders: dict[int, int]) -> bool:
    """Apply announcements; True on `bye`."""
    for line in lines:
        if line == b"bye":
            return True
        if line[:1] == b"+":
            pid, _, start = line[1:].partition(b" ")
            leaders[int(pid)] = int(start or 0)
        elif line[:1] == b"-":
            leaders.pop(int(line[1:]), None)
    return False


def _only_descriptor(keep: int) -> None:
    """Stdio to /dev/null and every other descriptor closed: the watchdog must not hold the
    supervisor's files, locks or the pipes a caller waits on for end-of-file."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    low, high = sorted((keep, null))
    os.closerange(3, low)
    os.closerange(low + 1, high)
    os.closerange(high + 1, os.sysconf("SC_OPEN_MAX"))
    os.close(null)


def kill_leaders(leaders: dict[int, int], start_of: Callable[[int], int | None]) -> None:
    """SIGKILL the process group of each leader still running as the same process."""
    for pid, start in leaders.items():
        now = start_of(pid)
        if start and now is not None and now != start:
            continue  # the pid was reused (a gone leader's group may live on: killed below)
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass

