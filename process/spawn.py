"""Step processes: start each in its own session, reap it, signal its group, account it.

The supervisor's loop blocks on the pidfds registered here (plus its own wake-up
pipe), so a child's exit wakes it without polling; on kernels without pidfds
the children are polled.  Output goes straight from the child to its log files
(no pipes: a grandchild that keeps a descriptor open cannot make us wait).

Memory limits are enforced by the cgroup guard or, where cgroups cannot be
used, by the accounting sampler, which calls back when a tree goes over its
limit; the callback only marks the child and wakes the loop, which kills it.
"""

from __future__ import annotations

import os
import resource
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Any, Callable

from dagu.process import accounting
from dagu.process import limits as limits_mod
from dagu.process import sandbox


@dataclass
class Child:
    """One started process and whom it belongs to (`owner` is the caller's, never read here)."""

    popen: subprocess.Popen
    pidfd: int | None
    owner: Any
    tag: Any
    memory_key: str | None = None  # set when the cgroup guard holds its memory limit
    kill_at: float | None = None  # when an unanswered stop signal escalates to SIGKILL
    limit_error: str | None = None  # the memory limit could not be put in place: killed at once

    @property
    def pid(self) -> int:
        return self.popen.pid


@dataclass
class Reaped:
    """A child that ended: its exit status (negative: the signal) and what it used."""

    child: Child
    returncode: int
    usage: accounting.Usage
    cgroup_oom: bool = False


def signal_name(returncode: int) -> str | None:
    if returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def parse_signal(name: str | None) -> int:
    """`SIGTERM`, `TERM` or `term` as a signal number; SIGTERM when unknown."""
    name = (name or "SIGTERM").upper()
    try:
        return signal.Signals[name if name.startswith("SIG") else f"SIG{name}"]
    except KeyError:
        return signal.SIGTERM


def kill_group(pid: int, sig: int) -> None:
    """Signal the child's process group (its session), or the child alone if that is gone."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _own_peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class StrictSandbox:
    """The strict sandbox (read-only root), probed once, the first time a step asks for it."""

    def __init__(self) -> None:
        self._found: Any = None

    def wrap(self, argv: list[str], cwd: str, writable: list[str]) -> list[str]:
        if self._found is None:
            found = sandbox.probe_strict()
            if isinstance(found, str):
                raise OSError(f"strict sandbox requested but not available on this host: {found}")
            self._found = found
        return self._found.wrap(argv, cwd, writable)


class Children:
    """The supervisor's child processes, registered on its selector by pidfd."""

    def __init__(self, selector: selectors.BaseSelector, wake: Callable[[], None]) -> None:
        self.selector = selector
        self.wake = wake
        self.procs: dict[int, Child] = {}
        self.escalating: dict[int, Child] = {}  # children with a pending SIGKILL
        self.polled: set[int] = set()  # children without a pidfd (old kernels)
        self.over_limit: set[int] = set()  # marked by the sampler thread, killed by the loop
        self.sampler = accounting.Sampler()
        self.memory = limits_mod.MemoryGuard()

    def close(self) -> None:
        self.sampler.close()

    def start(self, owner: Any, argv: list[str], env: dict[str, str], cwd: str, stdout: str, stderr: str,
              limits: limits_mod.Limits | None, memory_key: str, tag: Any = None) -> Child:
        """Start one process in a new session (raises OSError).  When the memory limit it asked
        for cannot be put in place it is killed at once and `limit_error` says why."""
        for path in (stdout, stderr):
            parent = os.path.dirname(path)
            if parent and not os.path.isdir(parent):
                os.makedirs(parent, exist_ok=True)
        preexec = limits_mod.preexec_for(limits) if limits is not None else None
        out = os.open(stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            err = out if stdout == stderr else os.open(stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                                                       0o644)
            try:
                popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=cwd, env=env,
                                         start_new_session=True, close_fds=True, preexec_fn=preexec)
            finally:
                if err != out:
                    os.close(err)
        finally:
            os.close(out)
        pid = popen.pid
        try:
            pidfd: int | None = os.pidfd_open(pid)
        except (AttributeError, OSError):
            pidfd = None
        child = Child(popen, pidfd, owner, tag)
        self.procs[pid] = child
        if pidfd is not None:
            self.selector.register(pidfd, selectors.EVENT_READ, pid)
        else:
            self.polled.add(pid)
        if limits is not None and limits.memory_bytes:
            if self.memory.mechanism == "sampler":
                self.sampler.watch(pid, limits.memory_bytes, self._on_over_limit)
                return child
            child.memory_key = memory_key
            try:
                self.memory.start(memory_key, limits.memory_bytes, pid)
            except limits_mod.LimitError as exc:
                child.limit_error = str(exc)  # never let a step run without the limit it asked for
                kill_group(pid, signal.SIGKILL)
            self.sampler.watch(pid)
        else:
            self.sampler.watch(pid)
        return child

    def _on_over_limit(self, pid: int, rss: int) -> None:  # the sampler's thread
        self.over_limit.add(pid)
        self.wake()

    def take_over_limit(self) -> list[Child]:
        """Children the sampler found over their memory limit since the last call."""
        found = []
        for pid in list(self.over_limit):
            self.over_limit.discard(pid)
            child = self.procs.get(pid)
            if child is not None:
                found.append(child)
        return found

    def signal(self, child: Child, sig: int, grace: float | None = None) -> None:
        """Send `sig` to the child's group; with `grace`, SIGKILL follows if it is still there then."""
        kill_group(child.pid, sig)
        if grace is not None and sig != signal.SIGKILL and child.kill_at is None:
            child.kill_at = time.monotonic() + grace
            self.escalating[child.pid] = child

    def kill_all(self) -> None:
        for child in list(self.procs.values()):
            kill_group(child.pid, signal.SIGKILL)

    def next_deadline(self) -> float | None:
        times = [c.kill_at for c in self.escalating.values() if c.kill_at is not None]
        if self.polled:
            times.append(time.monotonic() + 0.01)
        return min(times) if times else None

    def escalate(self, now: float) -> None:
        """SIGKILL the groups whose grace period after a stop signal is over."""
        for child in list(self.escalating.values()):
            if child.kill_at is not None and now >= child.kill_at:
                child.kill_at = None
                del self.escalating[child.pid]
                kill_group(child.pid, signal.SIGKILL)

    def poll(self) -> list[Reaped]:
        """Reap the children that have no pidfd and have ended."""
        return [r for r in (self.reap(pid) for pid in list(self.polled)) if r is not None]

    def reap(self, pid: int) -> Reaped | None:
        """The child's end, if it has ended (never blocks)."""
        child = self.procs.get(pid)
        if child is None:
            return None
        try:
            got, status, rusage = os.wait4(pid, os.WNOHANG)
        except ChildProcessError:
            got, status, rusage = pid, 255 << 8, None
        if got == 0:
            return None
        child.popen.returncode = code = os.waitstatus_to_exitcode(status)
        del self.procs[pid]
        self.escalating.pop(pid, None)
        self.polled.discard(pid)
        if child.pidfd is not None:
            self.selector.unregister(child.pidfd)
            os.close(child.pidfd)
        stats = self.sampler.unwatch(pid)
        oom = bool(child.memory_key) and self.memory.finish(child.memory_key or "")
        usage = accounting.usage_from(0.0, 0.0, rusage, stats)
        if rusage is not None and rusage.ru_maxrss * 1024 <= _own_peak():
            # A child forked from us starts with our pages mapped, and the kernel keeps that
            # high-water mark across exec: a maxrss no bigger than ours may be our own, so only
            # the sampler's figure (taken after exec) is trusted for it.
            usage.peak_rss_bytes = stats.peak_rss_bytes
        return Reaped(child, code, usage, oom)
