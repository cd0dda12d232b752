"""A step's whole process tree, found again when the step ends, so nothing it started outlives it.

A step's leader exiting says nothing about what it left behind: `sleep 300 &` in a shell that
then exits, a `setsid` daemon, a child that ignores SIGTERM.  systemd's `KillMode=control-group`
is the model: every process a step starts is put in the step's own cgroup, and when the step
ends, for any reason, whatever is still in it gets SIGTERM, the grace period, then SIGKILL.

The mechanism is chosen once by probing, best first:

- `cgroup-v2`: a directory under our own cgroup in the unified hierarchy.  Membership is exact
  (a forked child is born in its parent's cgroup, `setsid` does not leave it), `cgroup.kill`
  kills the lot at once, and `cpu.stat` counts the CPU of every member, reaped or not.
- `cgroup-v1`: the same in a v1 hierarchy (cpuacct preferred: `cpuacct.usage` is the tree's CPU).
- `session`: no writable cgroup.  The step's processes are those in its session (the supervisor
  starts each step in a new one) plus every descendant of a member seen so far, by a /proc walk.
  It misses a process that left the session and whose parent exited before anyone looked.

The leader joins its cgroup in the child between fork and exec (`preexec`), so there is no
window in which it could fork outside it.  The same preexec sets PR_SET_PDEATHSIG: when the
supervisor dies (even by SIGKILL) the kernel kills each step's leader, and what the leader left
behind is still in the run's cgroups, which the next start of the DAG (or `dagu retry`) kills
with `reap_run` before it takes the run slot.

Cgroups are named after the run and the step, `<base>/dagu-run-<run>/<step>.<attempt>`, where
<run> is the run folder's path made safe (readable tail + hash: run ids repeat across data
dirs), so a later process can find a dead run's leftovers from the run folder alone.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import hashlib
import logging
import os
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from dagu.process.procfs import read_stat, scan_processes
from dagu.process.cgroup import cgroup_dir, mounts, own_cgroup, probe_child

log = logging.getLogger(__name__)

MECHANISMS = ("cgroup-v2", "cgroup-v1", "session")
_V1_CONTROLLERS = ("cpuacct", "pids", "freezer")
_PR_SET_PDEATHSIG = 1
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def safe_name(text: str) -> str:
    """A directory name for `text`: readable (its last 60 characters), and unique even when two
    texts differ only in characters a directory name cannot hold."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[-60:].lstrip(".")
    return f"{safe}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def _probe_dir(base: Path) -> Path | str:
    """base if a cgroup can be made (and removed) under it, else why not."""
    return probe_child(base) or base


@functools.cache
def probe(mechanism: str) -> Path | None | str:
    """For one mechanism: the cgroup directory step cgroups go under (None for the session
    mechanism), or why this host cannot use it."""
    if mechanism == "session":
        return None
    if mechanism == "cgroup-v2":
        found, own = mounts("cgroup2"), own_cgroup(None)
        if not found or own is None:
            return "no cgroup v2 hierarchy is mounted"
        return _probe_dir(cgroup_dir(found[0], own))
    if mechanism == "cgroup-v1":
        reasons = []
        for controller in _V1_CONTROLLERS:
            found = [m for m in mounts("cgroup") if controller in m[2].split(",")]
            own = own_cgroup(controller)
            if not found or own is None:
                reasons.append(f"no {controller} hierarchy")
                continue
            base = _probe_dir(cgroup_dir(found[0], own))
            if isinstance(base, Path):
                return base
            reasons.append(base)
        return "; ".join(reasons)
    raise ValueError(f"unknown tree mechanism {mechanism!r}: expected one of {', '.join(MECHANISMS)}")


def choose(mechanism: str | None = None) -> tuple[str, Path | None]:
    """The best mechanism available (or `mechanism`, when it is available) and its base."""
    env_choice = os.environ.get("DAGU_PROCESS_TREE")  # for tests of the fallback, and for hosts
    wanted = mechanism or (env_choice if env_choice in MECHANISMS else None)  # where a cgroup misbehaves
    for candidate in (wanted,) if wanted else MECHANISMS:
        found = probe(candidate)
        if not isinstance(found, str):
            return candidate, found
        log.debug("process tree mechanism %s unavailable: %s", candidate, found)
    return "session", None


@dataclass
class StepTree:
    """The processes of one step attempt: its cgroup, or its leader's session and what was seen."""

    cgroup: Path | None = None
    leader: int = 0
    leader_start: int = 0  # start ticks of the leader: a reused pid is not ours
    known: dict[int, int] = field(default_factory=dict)  # pid -> start ticks, session mechanism


def _pdeathsig() -> Callable[[], None] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    return arm


_ARM_PDEATHSIG = _pdeathsig()


def _alive(pid: int, start: int | None = None) -> bool:
    stat = read_stat(pid)
    return stat is not None and stat.state != "Z" and (start is None or stat.start == start)


def _cgroup_members(path: Path) -> list[int]:
    try:
        text = (path / "cgroup.procs").read_text()
    except OSError:
        return []
    return [pid for pid in map(int, text.split()) if _alive(pid)]


class TreeTracker:
    """The step trees of one run, by the mechanism this host allows."""

    def __init__(self, run_path: str, mechanism: str | None = None) -> None:
        self.mechanism, base = choose(mechanism)
        self.run_dir = base / run_cgroup_name(run_path) if base is not None else None
        self._ppid = os.getpid()

    def prepare(self, key: str) -> StepTree:
        """A tree for one attempt, before its leader is started.  A cgroup that cannot be made
        leaves the step to the session mechanism rather than failing it."""
        tree = StepTree()
        if self.run_dir is None:
            return tree
        path = self.run_dir / safe_name(key)
        try:
            self.run_dir.mkdir(exist_ok=True)
            if path.exists():
                kill_cgroup(path)  # left by a supervisor of this run that crashed mid-step
            path.mkdir()
            tree.cgroup = path
        except OSError as exc:
            log.warning("cannot create cgroup %s (%s): the step is tracked by its session", path, exc.strerror)
        return tree

    def preexec(self, tree: StepTree, then: Callable[[], None] | None) -> Callable[[], None]:
        """What the child runs between fork and exec: join the step's cgroup, die with the
        supervisor, then `then` (the rlimits).  Only os-level calls: the child of a threaded
        parent must not take locks."""
        procs = str(tree.cgroup / "cgroup.procs") if tree.cgroup is not None else None
        arm, parent = _ARM_PDEATHSIG, self._ppid

        def child() -> None:
            if procs is not None:
                fd = os.open(procs, os.O_WRONLY)
                try:
                    os.write(fd, b"0")
                finally:
                    os.close(fd)
            if arm is not None:
                arm()
                if os.getppid() != parent:  # the supervisor died before the signal was armed
                    os._exit(255)
            if then is not None:
                then()

        return child

    def started(self, tree: StepTree, pid: int) -> None:
        stat = read_stat(pid)
        tree.leader, tree.leader_start = pid, stat.start if stat is not None else 0

    def members(self, tree: StepTree) -> list[int]:
        """The tree's live processes (zombies left out: they hold nothing and cannot be killed)."""
        if tree.cgroup is not None:
            return _cgroup_members(tree.cgroup)
        return self._session_members(tree)

    def _session_members(self, tree: StepTree) -> list[int]:
        processes = scan_processes()
        children: dict[int, list[int]] = {}
        for pid, stat in processes.items():
            children.setdefault(stat.ppid, []).append(pid)
        roots = [pid for pid, stat in processes.items()
                 if stat.session == tree.leader and stat.start >= tree.leader_start]
        roots += [pid for pid, start in tree.known.items()
                  if pid in processes and processes[pid].start == start]
        found: dict[int, int] = {}
        while roots:
            pid = roots.pop()
            if pid in found or pid == os.getpid():
                continue
            found[pid] = processes[pid].start
            roots.extend(children.get(pid, ()))
        tree.known = found
        return [pid for pid in found if processes[pid].state != "Z"]

    def signal(self, tree: StepTree, sig: int) -> int:
        """Send `sig` to every process of the tree; how many there were."""
        if sig == signal.SIGKILL and tree.cgroup is not None and _write(tree.cgroup / "cgroup.kill", "1"):
            return len(self.members(tree))
        pids = self.members(tree)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        return len(pids)

    def cpu_sec(self, tree: StepTree) -> float | None:
        """CPU time of every process the tree ever held, when its cgroup counts it."""
        if tree.cgroup is None:
            return None
        return cgroup_cpu_sec(tree.cgroup)

    def release(self, tree: StepTree) -> None:
        """The attempt is over: kill anything left (there should be nothing) and remove the cgroup."""
        if tree.cgroup is not None:
            kill_cgroup(tree.cgroup)
            tree.cgroup = None

    def close(self) -> None:
        """The run is over: remove its cgroup directory (empty by now)."""
        if self.run_dir is not None:
            try:
                self.run_dir.rmdir()
            except OSError:
                pass


def _write(path: Path, value: str) -> bool:
    try:
        path.write_text(value)
        return True
    except OSError:
        return False


def cgroup_cpu_sec(path: Path) -> float | None:
    """CPU seconds a cgroup has used: v2 `cpu.stat` usage_usec, or v1 `cpuacct.usage` (ns)."""
    try:
        for line in (path / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                return int(value) / 1e6
    except (OSError, ValueError):
        pass
    try:
        return int((path / "cpuacct.usage").read_text()) / 1e9
    except (OSError, ValueError):
        return None


def kill_cgroup(path: Path, timeout: float = 2.0) -> int:
    """SIGKILL every process in a cgroup (and its child cgroups), then remove them; how many
    processes there were.  Never raises: a cgroup that will not go is logged."""
    killed = 0
    for sub in sorted((p for p in path.iterdir() if p.is_dir()), reverse=True) if path.is_dir() else ():
        killed += kill_cgroup(sub, timeout)
    deadline = time.monotonic() + timeout
    while True:
        members = _cgroup_members(path)
        killed = max(killed, len(members))
        if not _write(path / "cgroup.kill", "1"):
            for pid in members:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        try:
            path.rmdir()
            return killed
        except FileNotFoundError:
            return killed
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                log.warning("could not remove cgroup %s: %s", path, exc.strerror)
                return killed
        time.sleep(0.01)


# --------------------------------------------------------------------------
# A dead supervisor's run
# --------------------------------------------------------------------------


def _boot_time() -> float | None:
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            return next(float(line.split()[1]) for line in fh if line.startswith("btime "))
    except (OSError, StopIteration, ValueError):
        return None


def run_cgroup_name(run_path: str) -> str:
    """The cgroup directory of a run, from its run folder (unique across data dirs)."""
    return f"dagu-run-{safe_name(os.path.abspath(run_path))}"


def run_leftovers(run_path: str, leaders: Iterable[tuple[int, float]]) -> list[int]:
    """Live processes of the run in `run_path` whose supervisor is gone: everything in its cgroups, and
    the members of its step leaders' sessions (`leaders`: pid and wall-clock start of each
    attempt that had not finished), started no earlier than the attempt."""
    found: set[int] = set()
    for mechanism in ("cgroup-v2", "cgroup-v1"):
        base = probe(mechanism)
        if isinstance(base, Path):
            run_dir = base / run_cgroup_name(run_path)
            if run_dir.is_dir():
                for sub in run_dir.iterdir():
                    if sub.is_dir():
                        found.update(_cgroup_members(sub))
    boot = _boot_time()
    leaders = list(leaders)
    if boot is not None and leaders:
        for pid, stat in scan_processes().items():
            for leader, started_at in leaders:
                if stat.session == leader and stat.state != "Z" \
                        and boot + stat.start / _CLOCK_TICKS >= started_at - 5:
                    found.add(pid)
    found.discard(os.getpid())
    return sorted(found)


def reap_run(run_path: str, leaders: Iterable[tuple[int, float]]) -> int:
    """SIGKILL whatever a dead supervisor's run left running and remove its cgroups; how many
    processes were killed."""
    pids = run_leftovers(run_path, leaders)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    for mechanism in ("cgroup-v2", "cgroup-v1"):
        base = probe(mechanism)
        if isinstance(base, Path) and (base / run_cgroup_name(run_path)).is_dir():
            kill_cgroup(base / run_cgroup_name(run_path))
    return len(pids)


def attempt_leaders(status: Any) -> list[tuple[int, float]]:
    """(pid, wall-clock start) of each step attempt of a run (a store.state.RunStatus) that had
    not finished when its supervisor died: whose sessions `run_leftovers` looks in."""
    found = []
    for state in (*status.steps.values(), *status.handlers.values()):
        attempt = state.last
        if attempt is None or attempt.pid is None:
            continue
        if attempt.finished_at is None or attempt.error == "interrupted":
            found.append((attempt.pid, attempt.started_at))
    return found


def describe_leftovers(view: Any) -> list[str]:
    """For `dagu status` of a run (a store.runs.RunView) whose supervisor died: whether its
    processes still run.  Nothing for a run that was not interrupted."""
    status = view.status
    if not (view.dead or status.interrupted):
        return []
    pids = run_leftovers(view.path, attempt_leaders(status))
    if not pids:
        return ["the run's supervisor died; none of its step processes is still running"]
    shown = ", ".join(map(str, pids[:10])) + (", ..." if len(pids) > 10 else "")
    return [f"the run's supervisor died and {len(pids)} of its step processes are still running "
            f"(pids {shown}); `dagu retry` of the run or the next start of the DAG kills them"]
