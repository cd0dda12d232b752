"""What a step attempt cost: wall time, CPU, peak memory of its process tree, and disk I/O.

The supervisor waits for each step's leader with `os.wait4`, whose rusage is exact for CPU but
says little about memory: `ru_maxrss` is the largest *single* process, so a pipeline of three
1 GB processes reports 1 GB, and processes that outlive their parent (reparented to init) are
not in it at all.  So one daemon thread, the `Sampler`, walks every watched process tree every
~50 ms and records the tree's summed RSS, and the last CPU and I/O counters of each process.
`usage_from` then combines the two, each as a floor for the other.

Cost is the design constraint (at most 2% CPU for a step that runs a minute), which is why this
reads /proc directly: a tree is found by following /proc/PID/task/TID/children from the leader
(a few reads per process) instead of psutil's `children(recursive=True)`, which reads the stat
file of every process on the host (see tests/bench/sampler_bench.py for the figures).
Processes that escape the tree (a double fork reparents them to init) are picked up by a scan of
/proc for the leader's session every couple of seconds, since the supervisor starts each step in
its own session.

Counters are cumulative and the kernel adds a reaped child's CPU and I/O to its parent's, so a
process that vanished while its parent is still alive is treated as absorbed by that parent
(whose fresh reading includes it); one whose parent is gone too keeps its last-seen counters.
Summing every process's last reading instead would count each reaped child twice.

Linux only: elsewhere the sampler records nothing and the supervisor falls back on rusage.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import asdict
from collections.abc import Callable, Iterable

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any
    import resource

from dagu.process.lazy_log import LazyLogger
from dagu.spec.records import dataclass
from dagu.process.procfs import (_pread, _Stat, children_files_available, parse_stat, proc_available,  # noqa: F401
                                 read_children, read_io, read_stat, scan_processes)

log = LazyLogger(__name__)

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
MAX_SHARE = 0.02
"""The share of one core a sampling pass may take: the interval stretches when a pass costs more."""
IO_EVERY = 4
"""Read /proc/PID/io every this many samples (and whenever a child was absorbed): I/O
counters are cumulative, so reading them less often only delays them, and it saves a third of
the sampling cost for a large tree."""


@dataclass
class TreeStats:
    """What sampling saw of one process tree, from `watch` to `unwatch`."""

    peak_rss_bytes: int
    read_bytes: int
    write_bytes: int
    samples: int
    user_sec: float = 0.0
    sys_sec: float = 0.0
    processes: int = 0  # distinct processes seen in the tree


@dataclass
class Usage:
    """One step attempt's cost, as stored in the run's state JSON."""

    wall_sec: float
    user_sec: float
    sys_sec: float
    peak_rss_bytes: int
    read_bytes: int
    write_bytes: int
    samples: int

    def to_dict(self) -> dict[str, float | int]:
        """Plain JSON values; seconds rounded to the millisecond so state files stay readable."""
        out: dict[str, float | int] = asdict(self)
        for key in ("wall_sec", "user_sec", "sys_sec"):
            out[key] = round(float(out[key]), 3)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, float | int]) -> Usage:
        """The inverse of `to_dict`; missing keys read as 0 so older state files still load."""
        return cls(
            wall_sec=float(data.get("wall_sec", 0.0)),
            user_sec=float(data.get("user_sec", 0.0)),
            sys_sec=float(data.get("sys_sec", 0.0)),
            peak_rss_bytes=int(data.get("peak_rss_bytes", 0)),
            read_bytes=int(data.get("read_bytes", 0)),
            write_bytes=int(data.get("write_bytes", 0)),
            samples=int(data.get("samples", 0)),
        )


def usage_from(started: float, ended: float, rusage: "resource.struct_rusage | None",
               stats: TreeStats) -> Usage:
    """Combine the leader's rusage (from wait4) with what sampling saw.

    rusage covers the leader and every descendant it reaped, exactly, but only up to the largest
    single process for memory; sampling covers the whole tree at once and escaped processes, but
    only at sample instants.  So each figure is the larger of the two.
    """
    user = sys_ = 0.0
    maxrss = inblock = oublock = 0
    if rusage is not None:
        user, sys_ = rusage.ru_utime, rusage.ru_stime
        # ru_maxrss is KiB on Linux, bytes on macOS.
        maxrss = rusage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
        inblock, oublock = rusage.ru_inblock * 512, rusage.ru_oublock * 512
    return Usage(
        wall_sec=max(0.0, ended - started),
        user_sec=max(user, stats.user_sec),
        sys_sec=max(sys_, stats.sys_sec),
        peak_rss_bytes=max(maxrss, stats.peak_rss_bytes),
        read_bytes=max(inblock, stats.read_bytes),
        write_bytes=max(oublock, stats.write_bytes),
        samples=stats.samples,
    )


# --------------------------------------------------------------------------
# One tree
# --------------------------------------------------------------------------


@dataclass(slots=True)
class _Proc:
    """The last-seen counters of one process of a tree, and the /proc files held open for it."""

    start: int
    ppid: int
    user_ticks: int = 0
    sys_ticks: int = 0
    read_bytes: int = 0
    write_bytes: int = 0
    stat_fd: int = -1
    children_fd: int = -1


class _FdBudget:
    """How many /proc files a sampler may hold open, so a huge tree cannot exhaust the
    supervisor's descriptors; processes beyond the budget are read by path."""

    def __init__(self, limit: int) -> None:
        self.left = limit
        self._lock = threading.Lock()  # trees are sampled by the thread and released by unwatch

    def open(self, proc: _Proc, pid: int) -> None:
        with self._lock:
            if self.left < 2:
                return
            self.left -= 2
        try:
            proc.stat_fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
            proc.children_fd = os.open(f"/proc/{pid}/task/{pid}/children", os.O_RDONLY)
        except OSError:
            pass
        with self._lock:
            self.left += (proc.stat_fd < 0) + (proc.children_fd < 0)

    def close(self, proc: _Proc) -> None:
        for fd in (proc.stat_fd, proc.children_fd):
            if fd >= 0:
                os.close(fd)
                with self._lock:
                    self.left += 1
        proc.stat_fd = proc.children_fd = -1


class _Tree:
    """Sampling state of one watched tree.  Only touched with its own `lock` held."""

    def __init__(self, pid: int, rss_limit: int | None,
                 on_over_limit: Callable[[int, int], None] | None, fds: _FdBudget,
                 cpu_limit: float | None = None, on_over_cpu: Callable[[int, float], None] | None = None) -> None:
        self.leader = pid
        self.rss_limit = rss_limit
        self.on_over_limit = on_over_limit
        self.fired = False
        self.cpu_limit = cpu_limit
        self.on_over_cpu = on_over_cpu
        self.cpu_fired = False
        self.fds = fds
        self.procs: dict[int, _Proc] = {}
        self.settled = [0, 0, 0, 0]  # user ticks, sys ticks, read, write of vanished processes
        self.peak = 0
        self.samples = 0
        self.seen = 0
        self.session: int | None = None
        self.lock = threading.Lock()
        self.done = False
        self._started = False

    def _start(self) -> None:
        """Find the leader; done at the first sample, in the sampler's thread, not in watch()."""
        self._started = True
        leader = read_stat(self.leader)
        if leader is not None:
            self._add(self.leader, leader)
            # Sweep /proc for the session only if the leader leads one: otherwise the sweep
            # would take in the supervisor's own session.
            self.session = self.leader if leader.session == self.leader else None

    def _add(self, pid: int, stat: _Stat) -> _Proc:
        proc = self.procs[pid] = _Proc(stat.start, stat.ppid)
        self.fds.open(proc, pid)
        self.seen += 1
        return proc

    def _stat(self, pid: int, known: _Proc | None, reached: bool) -> _Stat | None:
        if known is not None and known.stat_fd >= 0:
            data = _pread(known.stat_fd)
            if data:
                return parse_stat(data)
            if not reached:
                return None  # gone; a process now using its pid is not ours unless reached
        return read_stat(pid)

    def _children(self, pid: int, stat: _Stat, known: _Proc | None,
                  index: dict[int, list[int]] | None) -> list[int]:
        if index is not None:
            return index.get(pid, [])
        if known is not None and known.children_fd >= 0 and stat.threads <= 1:
            data = _pread(known.children_fd, 65536)
            if data is not None and len(data) < 65536:
                return [int(c) for c in data.split()]
        return read_children(pid, stat.threads)

    def sample(self, extra: Iterable[int], index: dict[int, list[int]] | None) -> int:
        """Take one sample; returns the tree's RSS.  `extra`: session members found by a sweep;
        `index`: parent -> children of the whole host, when children files are unavailable."""
        if not self._started:
            self._start()
        members: dict[int, _Stat] = {}
        stack = [(pid, False) for pid in self.procs] + [(pid, True) for pid in extra]
        while stack:
            pid, reached = stack.pop()
            if pid in members:
                continue
            known = self.procs.get(pid)
            stat = self._stat(pid, known, reached)
            if stat is None:
                continue
            if known is not None and known.start != stat.start:
                known = None  # the pid we knew was reaped and reused
            if known is None and not reached:
                continue
            members[pid] = stat
            stack.extend((kid, True) for kid in self._children(pid, stat, known, index))

        fresh_io = set()
        for pid, proc in list(self.procs.items()):
            stat = members.get(pid)
            if stat is not None and stat.start == proc.start:
                continue
            del self.procs[pid]
            self.fds.close(proc)
            parent, parent_stat = self.procs.get(proc.ppid), members.get(proc.ppid)
            if parent is not None and parent_stat is not None and parent.start == parent_stat.start:
                fresh_io.add(proc.ppid)  # reaped by a parent still here: its counters now hold it
            else:
                for i, value in enumerate((proc.user_ticks, proc.sys_ticks,
                                           proc.read_bytes, proc.write_bytes)):
                    self.settled[i] += value

        rss = 0
        for pid, stat in members.items():
            proc = self.procs.get(pid)
            if proc is None:
                proc = self._add(pid, stat)
                fresh_io.add(pid)
            proc.ppid, proc.user_ticks, proc.sys_ticks = stat.ppid, stat.user_ticks, stat.sys_ticks
            if pid in fresh_io or self.samples % IO_EVERY == 0:
                io = read_io(pid)
                if io is not None:
                    proc.read_bytes, proc.write_bytes = io
            if stat.state != "Z":
                rss += stat.rss_bytes
        self.samples += 1
        self.peak = max(self.peak, rss)
        return rss

    def stats(self) -> TreeStats:
        totals = list(self.settled)
        for proc in self.procs.values():
            totals[0] += proc.user_ticks
            totals[1] += proc.sys_ticks
            totals[2] += proc.read_bytes
            totals[3] += proc.write_bytes
        return TreeStats(peak_rss_bytes=self.peak, read_bytes=totals[2], write_bytes=totals[3],
                         samples=self.samples, user_sec=totals[0] / _CLOCK_TICKS,
                         sys_sec=totals[1] / _CLOCK_TICKS, processes=self.seen)

    def release(self) -> None:
        """Close every held file."""
        for proc in self.procs.values():
            self.fds.close(proc)


# --------------------------------------------------------------------------
# The sampler
# --------------------------------------------------------------------------


class Sampler:
    """One daemon thread sampling every watched process tree.

    Why one thread: the supervisor may run dozens of steps at once, and one thread waking every
    interval to read a few /proc files per process is far cheaper than a thread per step.  The
    thread starts at the first `watch` and sleeps (no wake-ups) while nothing is watched.
    Nothing here raises because a process vanished: a vanished process simply stops being read.
    """

    def __init__(self, interval_sec: float = 0.05, sweep_interval_sec: float = 2.0,
                 max_open_files: int = 128) -> None:
        self._interval = interval_sec
        self._fds = _FdBudget(max_open_files)
        self._sweep_interval = sweep_interval_sec
        self._cond = threading.Condition()
        self._trees: dict[int, _Tree] = {}
        self._thread: threading.Thread | None = None
        self._closed = False
        self._enabled = proc_available()

    def watch(self, pid: int, rss_limit_bytes: int | None = None,
              on_over_limit: Callable[[int, int], None] | None = None, cpu_limit_sec: float | None = None,
              on_over_cpu: Callable[[int, float], None] | None = None) -> None:
        """Start sampling the tree under `pid` (a session leader, as the supervisor spawns steps).

        Registration only, no /proc reads: this runs in the supervisor's hot path, once per
        step.  The thread takes the first sample within one interval, so a step that lives
        less than that costs nothing to account (wait4's rusage still covers its CPU).
        `on_over_limit(pid, rss)` is called once, from the sampler thread, when the tree's RSS
        first exceeds `rss_limit_bytes`; the caller decides what to kill.  Likewise
        `on_over_cpu(pid, seconds)` when the CPU time of the whole tree (every process in it,
        reaped or not) first exceeds `cpu_limit_sec`: an rlimit counts per process only.
        """
        with self._cond:
            if self._closed:
                raise RuntimeError("Sampler.watch after close")
            if pid in self._trees:
                raise ValueError(f"pid {pid} is already watched")
            self._trees[pid] = _Tree(pid, rss_limit_bytes, on_over_limit, self._fds, cpu_limit_sec, on_over_cpu)
            if self._thread is None and self._enabled:
                self._thread = threading.Thread(target=self._run, name="dagu-sampler", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def unwatch(self, pid: int) -> TreeStats:
        """Stop sampling `pid`'s tree and return what was seen.

        When the tree had more than its leader, one last sample picks up descendants still
        alive (escaped ones) with their latest counters; a lone leader is already reaped, so
        there is nothing left to read.
        """
        with self._cond:
            tree = self._trees.pop(pid, None)
        if tree is None:  # never watched (say, spawning failed half-way): nothing was seen
            return TreeStats(peak_rss_bytes=0, read_bytes=0, write_bytes=0, samples=0)
        with tree.lock:
            if self._enabled and tree.seen > 1:
                try:
                    tree.sample((), self._index())
                except Exception:  # never fail the supervisor over accounting
                    log.exception("sampling process tree %d failed", pid)
            tree.release()
            tree.done = True
            return tree.stats()

    def members(self, pid: int) -> dict[int, int]:
        """Every process of `pid`'s tree seen at the last sample and not known to be gone
        (pid -> start ticks): the tree as it was, even for those that left the session."""
        with self._cond:
            tree = self._trees.get(pid)
        if tree is None:
            return {}
        with tree.lock:
            return {member: proc.start for member, proc in tree.procs.items()}

    def close(self) -> None:
        """Stop the thread; idempotent.  Trees still watched are dropped."""
        with self._cond:
            self._closed = True
            for tree in self._trees.values():
                tree.release()
            self._trees.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def __enter__(self) -> Sampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the thread --------------------------------------------------------

    def _run(self) -> None:
        next_sweep = time.monotonic() + self._sweep_interval
        while True:
            with self._cond:
                while not self._trees and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                trees = list(self._trees.values())
            # /proc is read without the sampler's lock, so watch/unwatch never wait for a pass
            started = time.monotonic()
            sweep: dict[int, list[int]] = {}
            index = None
            try:
                if started >= next_sweep:
                    next_sweep = started + self._sweep_interval
                    sweep = self._sweep(trees)
                index = self._index()
            except Exception:  # the thread must outlive any surprise in /proc
                log.exception("scanning /proc failed")
            alerts = []
            for tree in trees:
                with tree.lock:
                    if not tree.done:
                        alerts += self._sample_tree(tree, sweep.get(tree.leader, ()), index)
            self._fire(alerts)
            cost = time.monotonic() - started
            with self._cond:
                if self._closed:
                    return
                # Many trees at once (a wide fan-out) make a pass expensive: stretch the interval
                # so sampling stays near MAX_SHARE of one core instead of starving the steps.
                self._cond.wait(max(self._interval, cost / MAX_SHARE))

    def _sample_tree(self, tree: _Tree, extra: Iterable[int],
                     index: dict[int, list[int]] | None) -> list[tuple[Callable[[int, Any], None], int, Any]]:
        try:
            rss = tree.sample(extra, index)
        except Exception:
            log.exception("sampling process tree %d failed", tree.leader)
            return []
        alerts: list[tuple[Callable[[int, Any], None], int, Any]] = []
        if tree.rss_limit is not None and rss > tree.rss_limit and not tree.fired:
            tree.fired = True
            if tree.on_over_limit is not None:
                alerts.append((tree.on_over_limit, tree.leader, rss))
        if tree.cpu_limit is not None and not tree.cpu_fired and tree.on_over_cpu is not None:
            stats = tree.stats()
            cpu = stats.user_sec + stats.sys_sec
            if cpu > tree.cpu_limit:
                tree.cpu_fired = True
                alerts.append((tree.on_over_cpu, tree.leader, cpu))
        return alerts

    def _sweep(self, trees: list[_Tree]) -> dict[int, list[int]]:
        """Session leader -> pids in its session, for watched leaders that lead a session."""
        sessions = {tree.session for tree in trees if tree.session is not None}
        if not sessions:
            return {}
        found: dict[int, list[int]] = {}
        for pid, stat in scan_processes().items():
            if stat.session in sessions:
                found.setdefault(stat.session, []).append(pid)
        return found

    @staticmethod
    def _index() -> dict[int, list[int]] | None:
        """Without children files, one scan of /proc per round maps every parent to its children."""
        if children_files_available():
            return None
        index: dict[int, list[int]] = {}
        for pid, stat in scan_processes().items():
            index.setdefault(stat.ppid, []).append(pid)
        return index

    @staticmethod
    def _fire(alerts: list[tuple[Callable[[int, Any], None], int, Any]]) -> None:
        """Call over-limit callbacks without the lock held, so they may unwatch or kill."""
        for callback, pid, rss in alerts:
            try:
                callback(pid, rss)
            except Exception:
                log.exception("on_over_limit callback for pid %d failed", pid)
