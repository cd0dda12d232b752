"""Step processes: start each in its own session, reap it, signal its group, account it.

The supervisor's loop blocks on the pidfds registered here (plus its own wake-up
pipe), so a child's exit wakes it without polling; on kernels without pidfds
the children are polled.  Output goes straight from the child to its log files
(no pipes: a grandchild that keeps a descriptor open cannot make us wait).

A step is over when its leader has exited *and* nothing else of its tree (process/tree.py:
its cgroup, or its session and descendants) is left: leftovers get SIGTERM, the grace period,
then SIGKILL, and the `Reaped` says how many there were.  Until then the leftovers' pidfds
wake the loop, so a leftover that obeys SIGTERM ends the step at once.

`limits.cpu_sec` is also a limit of the whole tree: the sampler sums the CPU of every process
in it (the rlimit alone would let each process have its own allowance).

Memory limits are enforced by the cgroup guard or, where cgroups cannot be
used, by the accounting sampler, which calls back when a tree goes over its
limit; the callback only marks the child and wakes the loop, which kills it.
"""

from __future__ import annotations

import errno
import os
import resource
import selectors
import signal
import time
from collections.abc import Callable

from dagu.spec.records import dataclass
from dagu.process import accounting
from dagu.process import exec_child
from dagu.process import limits as limits_mod
from dagu.process import sandbox
from dagu.process.fork import ForkedProcess, fork_child
from dagu.process.tree import StepTree, TreeTracker

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    import subprocess
    from typing import Any


@dataclass
class Child:
    """One started process and whom it belongs to (`owner` is the caller's, never read here)."""

    popen: "subprocess.Popen | ForkedProcess"
    pidfd: int | None
    owner: Any
    tag: Any
    memory_key: str | None = None  # set when the cgroup guard holds its memory limit
    kill_at: float | None = None  # when an unanswered stop signal escalates to SIGKILL
    limit_error: str | None = None  # the memory limit could not be put in place: killed at once
    tree: StepTree | None = None
    ended: tuple[int, Any] | None = None  # the leader's exit status and rusage, once reaped
    leftovers: dict[int, int] | None = None  # pid -> pidfd of processes left when the leader ended
    over: str | None = None  # "memory" or "cpu": the sampler found the tree over that limit
    signalled: bool = False  # a stop signal went to the whole tree while its leader lived
    killed_late: int = 0  # processes of a signalled tree that needed SIGKILL after its leader ended

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
    leftovers: int = 0  # processes still running when the leader ended, killed since


class SpawnError(OSError):
    """A process that cannot be started, for a reason the user can fix (a NUL byte in a value)."""


def check_spawnable(argv: list[str], env: dict[str, str]) -> None:
    """Refuse values the kernel cannot carry, naming the variable (Popen would say only
    "embedded null byte", after the fork)."""
    for name, value in env.items():
        if "\0" in name:
            raise SpawnError(f"an environment variable name contains a NUL byte ({name!r})")
        if "\0" in value:
            raise SpawnError(f"environment variable {name} contains a NUL byte, which a process "
                             "environment cannot hold (a step output with binary data? write it to a file)")
    for index, word in enumerate(argv):
        if "\0" in word:
            raise SpawnError(f"argument {index} of the command ({word[:40]!r}...) contains a NUL byte, "
                             "which a command line cannot hold")


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


def _program(program: str, env: dict[str, str], cwd: str) -> str:
    """The file that exec'ing `program` runs, found as Popen would (in the PATH of `env`, a
    relative entry taken from `cwd`), or the OSError Popen would raise for it.

    Handing Popen the file saves what its own search costs per step: a candidate path built in
    Python for every PATH entry, and a failed execve in the child for each entry before the
    right one (eight on a PATH like a CI runner's).  And the cgroup-joining shell, which runs the
    program itself, can be refused a missing one before it starts: the step then fails to start
    with the usual message instead of the shell exiting 127."""
    if not os.path.isdir(cwd):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", cwd)
    if os.sep in program:
        path = program if os.path.isabs(program) else os.path.join(cwd, program)
        if not os.path.exists(path):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", program)
        if not _executable(path):
            raise PermissionError(errno.EACCES, "Permission denied", program)
        return program
    for folder in os.get_exec_path(env):
        path = os.path.join(cwd, folder or os.curdir, program)  # an absolute folder replaces cwd
        if _executable(path):
            return path
    raise FileNotFoundError(errno.ENOENT, "No such file or directory", program)


def _executable(path: str) -> bool:
    """What shutil.which accepts on POSIX; written out because importing shutil (with bz2 and
    lzma) cost every run 3-4 ms, for this one loop."""
    return os.access(path, os.X_OK) and not os.path.isdir(path)


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

    def __init__(self, selector: selectors.BaseSelector, wake: Callable[[], None], run_path: str = "",
                 grace: float = 5.0) -> None:
        self.selector = selector
        self.wake = wake
        self.grace = grace  # between SIGTERM and SIGKILL of what a step left behind
        self.trees = TreeTracker(run_path)
        self.procs: dict[int, Child] = {}
        self.escalating: dict[int, Child] = {}  # children with a pending SIGKILL
        self.polled: set[int] = set()  # children without a pidfd (old kernels)
        self.over_limit: set[int] = set()  # marked by the sampler thread, killed by the loop
        self.sampler = accounting.Sampler()
        self._memory: limits_mod.MemoryGuard | None = None
        self._devnull: int | None = None  # every child's stdin, opened once (close-on-exec)

    @property
    def memory(self) -> limits_mod.MemoryGuard:
        """The memory guard, made (its mechanism probed: cgroups made and removed) by the first
        step with a memory limit: a run without one needs no probe (~0.5 ms of every start)."""
        if self._memory is None:
            self._memory = limits_mod.MemoryGuard()
        return self._memory

    def no_more_processes(self) -> None:
        """The run's last attempt is reaped (its handlers' too): see TreeTracker.no_more_processes."""
        self.trees.no_more_processes()

    def close(self) -> None:
        self.sampler.close()
        self.trees.close()
        if self._devnull is not None:
            os.close(self._devnull)
            self._devnull = None

    def start(self, owner: Any, argv: list[str], env: dict[str, str], cwd: str, stdout: str, stderr: str,
              limits: limits_mod.Limits | None, memory_key: str, tag: Any = None,
              entry: Callable[[], int] | None = None) -> Child:
        """Start one process in a new session (raises OSError).  When the memory limit it asked
        for cannot be put in place it is killed at once and `limit_error` says why.

        With `entry`, the process is a fork of this one that runs `entry()` instead of exec'ing
        `argv` (process/fork.py: a sub-DAG's supervisor); it is tracked exactly as a spawned one."""
        for path in (stdout, stderr):
            parent = os.path.dirname(path)
            if parent and not os.path.isdir(parent):
                os.makedirs(parent, exist_ok=True)
        check_spawnable(argv, env)
        program = _program(argv[0], env, cwd) if entry is None else ""
        tree = self.trees.prepare()
        then = limits_mod.preexec_for(limits) if limits is not None else None
        joined = None if then is not None or entry is not None else self.trees.joining(tree, argv, env)
        words = joined or argv
        if words[0] != argv[0]:  # the joining shell runs argv
            program = words[0]
        preexec = None if joined is not None else self.trees.preexec(tree, then)
        out = os.open(stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            err = out if stdout == stderr else os.open(stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                                                       0o644)
            try:
                if entry is not None:
                    popen: subprocess.Popen | ForkedProcess = fork_child(entry, env, cwd, out, err, preexec)
                else:
                    if self._devnull is None:
                        self._devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                    popen = exec_child.start(words, program, env, cwd, out, err, preexec, devnull=self._devnull)
            except BaseException:
                self.trees.release(tree)
                raise
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
        child = Child(popen, pidfd, owner, tag, tree=tree)
        self.trees.started(tree, pid)
        self.procs[pid] = child
        if pidfd is not None:
            self.selector.register(pidfd, selectors.EVENT_READ, pid)
        else:
            self.polled.add(pid)
        cpu_limit = limits.cpu_sec if limits is not None else None
        on_cpu = self._on_over_cpu if cpu_limit else None
        if limits is not None and limits.memory_bytes:
            if self.memory.mechanism == "sampler":
                self.sampler.watch(pid, limits.memory_bytes, self._on_over_limit, cpu_limit, on_cpu)
                return child
            child.memory_key = memory_key
            try:
                self.memory.start(memory_key, limits.memory_bytes, pid)
            except limits_mod.LimitError as exc:
                child.limit_error = str(exc)  # never let a step run without the limit it asked for
                kill_group(pid, signal.SIGKILL)
        self.sampler.watch(pid, None, None, cpu_limit, on_cpu)
        return child

    def _on_over_limit(self, pid: int, rss: int) -> None:  # the sampler's thread
        self._mark_over(pid, "memory")

    def _on_over_cpu(self, pid: int, cpu_sec: float) -> None:  # the sampler's thread
        self._mark_over(pid, "cpu")

    def _mark_over(self, pid: int, what: str) -> None:
        child = self.procs.get(pid)
        if child is not None and child.over is None:
            child.over = what
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
        """Send `sig` to the child's tree; with `grace`, SIGKILL follows if it is still there then."""
        self._signal_tree(child, sig)
        if grace is not None and sig != signal.SIGKILL and child.kill_at is None:
            child.kill_at = time.monotonic() + grace
            self.escalating[child.pid] = child

    def _signal_tree(self, child: Child, sig: int) -> None:
        if child.ended is None:
            kill_group(child.pid, sig)
            child.signalled = True
        elif sig == signal.SIGKILL and child.signalled and child.tree is not None:
            child.killed_late = max(child.killed_late, len(self.trees.members(child.tree)))
        if child.tree is not None:
            self.trees.signal(child.tree, sig)

    def kill_all(self) -> None:
        for child in list(self.procs.values()):
            self._signal_tree(child, signal.SIGKILL)

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
                self._signal_tree(child, signal.SIGKILL)

    def poll(self) -> list[Reaped]:
        """Reap the children that have no pidfd and have ended."""
        return [r for r in (self.reap(pid) for pid in list(self.polled)) if r is not None]

    def reap(self, pid: int) -> Reaped | None:
        """The child's end, once its leader has exited and nothing of its tree is left (never
        blocks).  What is left when the leader exits gets SIGTERM, then SIGKILL after the grace
        period (sooner, if a stop's grace is already running)."""
        child = self.procs.get(pid)
        if child is None:
            return None
        if child.ended is None:
            try:
                got, status, rusage = os.wait4(pid, os.WNOHANG)
            except ChildProcessError:
                got, status, rusage = pid, 255 << 8, None
            if got == 0:
                return None
            child.ended = (os.waitstatus_to_exitcode(status), rusage)
            if child.pidfd is not None:
                self.selector.unregister(child.pidfd)
                os.close(child.pidfd)
                child.pidfd = None
        if child.tree is not None and self._linger(child):
            return None
        code, rusage = child.ended
        child.popen.returncode = code
        del self.procs[pid]
        self.escalating.pop(pid, None)
        self.polled.discard(pid)
        # What a stop signal reached while the leader lived and that obeyed it is no leftover.
        leftovers = child.killed_late if child.signalled else len(child.leftovers or ())
        self._unwatch_leftovers(child, set())
        stats = self.sampler.unwatch(pid)
        if child.tree is not None:
            self.trees.release(child.tree)
        oom = bool(child.memory_key) and self.memory.finish(child.memory_key or "")
        usage = accounting.usage_from(0.0, 0.0, rusage, stats)
        if rusage is not None and rusage.ru_maxrss * 1024 <= _own_peak():
            # A child forked from us starts with our pages mapped, and the kernel keeps that
            # high-water mark across exec: a maxrss no bigger than ours may be our own, so only
            # the sampler's figure (taken after exec) is trusted for it.
            usage.peak_rss_bytes = stats.peak_rss_bytes
        return Reaped(child, code, usage, oom, leftovers)

    def _linger(self, child: Child) -> bool:
        """Whether processes of the child's tree outlive its leader; the first time, they get
        SIGTERM and a deadline for SIGKILL.  Their pidfds wake the loop as they exit."""
        assert child.tree is not None
        if child.tree.cgroup is None:  # the sampler saw the tree whole, before anyone was reparented
            child.tree.known.update(self.sampler.members(child.pid))
        alive = set(self.trees.left_behind(child.tree))
        if not alive:
            return False
        if child.leftovers is None:
            child.leftovers = {}
            if not child.signalled:
                self.trees.signal(child.tree, signal.SIGTERM)
            if child.kill_at is None:
                child.kill_at = time.monotonic() + self.grace
            self.escalating[child.pid] = child
        self._unwatch_leftovers(child, alive)
        for pid in alive - set(child.leftovers):
            try:
                fd = os.pidfd_open(pid)
            except (AttributeError, OSError):
                self.polled.add(child.pid)  # no pidfd: look again at the next poll
                continue
            child.leftovers[pid] = fd
            self.selector.register(fd, selectors.EVENT_READ, child.pid)
        return True

    def _unwatch_leftovers(self, child: Child, keep: set[int]) -> None:
        for pid, fd in list((child.leftovers or {}).items()):
            if pid not in keep and fd >= 0:
                self.selector.unregister(fd)
                os.close(fd)
                child.leftovers[pid] = -1  # type: ignore[index]
