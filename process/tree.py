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

The leader joins its cgroup before it runs a line of the step: it is started as
`sh -c 'echo $$ >cgroup.procs; exec "$@"' ...`, so there is no window in which it could fork
outside it.  Why a shell prefix and not code between fork and exec (`preexec_fn`): any such code
makes CPython fork the whole supervisor instead of vfork'ing it, ~2 ms per step; the shell costs
one small exec.  A step with rlimits, and a forked sub-DAG supervisor, still join in their
preexec (they run code there anyway).

When the supervisor dies (even by SIGKILL), the run's watchdog (process/watchdog.py) kills
every step tree; if the watchdog died too, what is left is still in the run's cgroups, which
the next start of the DAG (or `dagu retry`) kills with `reap_run` before it takes the run slot.

Cgroups are named after the run, `<base>/dagu-run-<run>/step-<n>`, where <run> is the run
folder's path made safe (readable tail + hash: run ids repeat across data dirs), so a later
process can find a dead run's leftovers from the run folder alone.  A step cgroup that an
attempt left empty is used again by a later attempt of the run.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import shlex
import signal
import time
from dataclasses import field
from collections.abc import Callable, Iterable

from dagu.process.lazy_log import LazyLogger
from dagu.spec.digest import sha1_hex
from dagu.spec.records import dataclass
from dagu.process.procfs import read_stat, scan_processes
from dagu.process.cgroup import Probe, cgroup_dir, mounts, own_cgroup, probe_child, write_text
from dagu.process.watchdog import Watchdog, kill_leaders

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any

log = LazyLogger(__name__)

MECHANISMS = ("cgroup-v2", "cgroup-v1", "session")
_V1_CONTROLLERS = ("cpuacct", "pids", "freezer")
_SHELL = "/bin/sh"
# $0: the cgroup.procs file; then, when the step's environment has PWD, its value; then argv.
# dash exports a PWD of its own: restore the environment's exactly (or its absence).
_JOIN = 'echo $$ 2>/dev/null >"$0" || {{ echo "dagu: cannot join the step\'s cgroup ($0)" >&2; exit 125; }}; {pwd}exec "$@"'
_JOIN_NO_PWD = _JOIN.format(pwd="unset PWD; ")
# A step that is already a POSIX shell's `-c` script joins in its own first line instead (no
# extra exec); on the same line, so the line numbers in the shell's messages stay the user's.
_POSIX_SHELLS = frozenset({"sh", "bash", "dash", "ash", "ksh", "mksh", "zsh"})
_JOIN_LINE = 'echo $$ 2>/dev/null >{procs} || {{ echo "dagu: cannot join the step\'s cgroup" >&2; exit 125; }}; '

_JOIN_PWD = _JOIN.format(pwd='PWD=$1; export PWD; shift; ')
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# Empty step cgroups kept for later attempts: enough for the steps a run usually has running at
# once; the end of a wide fan-out removes the rest as they empty, not all at the run's end.
_IDLE_KEPT = 16


def safe_name(text: str) -> str:
    """A directory name for `text`: readable (its last 60 characters), and unique even when two
    texts differ only in characters a directory name cannot hold."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[-60:].lstrip(".")
    return f"{safe}-{sha1_hex(text.encode())[:8]}"


def _probe_dir(base: str) -> Probe:
    """(base, None) if a cgroup can be made (and removed) under it, else (None, why not)."""
    why = probe_child(base)
    return (None, why) if why else (base, None)


@functools.cache
def probe(mechanism: str) -> Probe:
    """For one mechanism: (the cgroup directory step cgroups go under, None), (None, None) for
    the session mechanism, which needs none, or (None, why this host cannot use it)."""
    if mechanism == "session":
        return None, None
    if mechanism == "cgroup-v2":
        found, own = mounts("cgroup2"), own_cgroup(None)
        if not found or own is None:
            return None, "no cgroup v2 hierarchy is mounted"
        return _probe_dir(cgroup_dir(found[0], own))
    if mechanism == "cgroup-v1":
        reasons = []
        for controller in _V1_CONTROLLERS:
            found = [m for m in mounts("cgroup") if controller in m[2].split(",")]
            own = own_cgroup(controller)
            if not found or own is None:
                reasons.append(f"no {controller} hierarchy")
                continue
            base, why = _probe_dir(cgroup_dir(found[0], own))
            if why is None:
                return base, None
            reasons.append(why)
        return None, "; ".join(reasons)
    raise ValueError(f"unknown tree mechanism {mechanism!r}: expected one of {', '.join(MECHANISMS)}")


def choose(mechanism: str | None = None) -> tuple[str, str | None]:
    """The best mechanism available (or `mechanism`, when it is available) and its base."""
    env_choice = os.environ.get("DAGU_PROCESS_TREE")  # for tests of the fallback, and for hosts
    wanted = mechanism or (env_choice if env_choice in MECHANISMS else None)  # where a cgroup misbehaves
    for candidate in (wanted,) if wanted else MECHANISMS:
        base, why = probe(candidate)
        if why is None:
            return candidate, base
        log.debug("process tree mechanism %s unavailable: %s", candidate, why)
    return "session", None


@dataclass
class StepTree:
    """The processes of one step attempt: its cgroup, or its leader's session and what was seen."""

    cgroup: str | None = None  # the step cgroup's directory
    leader: int = 0
    leader_start: int = 0  # start ticks of the leader: a reused pid is not ours
    known: dict[int, int] = field(default_factory=dict)  # pid -> start ticks, session mechanism
    emptied: bool = False  # its cgroup was found empty once the leader ended: nothing of it is left


def _shell_script_index(argv: list[str]) -> int | None:
    """Where the script is in `sh [flags] -c SCRIPT [args]` of a POSIX shell, else None."""
    if os.path.basename(argv[0]) not in _POSIX_SHELLS:
        return None
    index = 1
    while index < len(argv):
        word = argv[index]
        if word == "-c":
            return index + 1 if index + 1 < len(argv) else None
        if word in ("-o", "+o"):
            index += 2
            continue
        if not word.startswith(("-", "+")) or word in ("-", "--"):
            return None
        index += 1
    return None


def _alive(pid: int, start: int | None = None) -> bool:
    stat = read_stat(pid)
    return stat is not None and stat.state != "Z" and (start is None or stat.start == start)


def _read_all(path: str) -> bytes:
    """A cgroup file, os-level: read once per step, where a text wrapper would cost more than
    the read (raises OSError)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        text = os.read(fd, 1 << 16)
        if len(text) == 1 << 16:  # a member list of over ~9,000 processes: read the rest
            while more := os.read(fd, 1 << 16):
                text += more
        return text
    finally:
        os.close(fd)


def _cgroup_members(path: str) -> list[int]:
    try:
        text = _read_all(os.path.join(path, "cgroup.procs"))
    except OSError:
        return []
    return [pid for pid in map(int, text.split()) if _alive(pid)]


def _populated(path: str) -> bool | None:
    """Whether any process is in the cgroup or below it (v2 `cgroup.events`; zombies do not
    count), or None where the file is missing (v1)."""
    try:
        return b"populated 1" in _read_all(os.path.join(path, "cgroup.events"))
    except OSError:
        return None


class TreeTracker:
    """The step trees of one run, by the mechanism this host allows."""

    def __init__(self, run_path: str, mechanism: str | None = None) -> None:
        self.mechanism, base = choose(mechanism)
        self.run_dir = os.path.join(base, run_cgroup_name(run_path)) if base is not None else None
        self.watchdog = Watchdog(self._kill_run)
        self._run_dir_made = False
        self._made = 0  # step cgroups made so far: they are named step-1, step-2, ...
        self._idle: list[str] = []  # step cgroups an attempt left empty, for the next ones

    def _kill_run(self, leaders: dict[int, int]) -> None:
        """In the watchdog, once the supervisor died: every step tree of the run."""
        if self.run_dir is not None and os.path.isdir(self.run_dir):
            kill_cgroup(self.run_dir)
        kill_leaders(leaders, lambda pid: getattr(read_stat(pid), "start", None))

    def prepare(self) -> StepTree:
        """A tree for one attempt, before its leader is started.  A cgroup that cannot be made
        leaves the step to the session mechanism rather than failing it.

        The cgroup is one an earlier attempt of this run left empty, when there is one: making
        and removing a cgroup costs the kernel ~60 us each, and a step's cgroup is only ever
        read for who is in it now, so an empty one is as good as new."""
        tree = StepTree()
        self.watchdog.ensure()
        if self.run_dir is None:
            return tree
        if self._idle:
            tree.cgroup = self._idle.pop()
            return tree
        self._made += 1
        path = os.path.join(self.run_dir, f"step-{self._made}")
        try:
            if not self._run_dir_made:
                _mkdir_exist_ok(self.run_dir)
                self._run_dir_made = True
            try:
                os.mkdir(path)
            except FileExistsError:
                kill_cgroup(path)  # left by a supervisor of this run that crashed mid-step
                os.mkdir(path)
            tree.cgroup = path
        except OSError as exc:
            log.warning("cannot create cgroup %s (%s): the step is tracked by its session", path, exc.strerror)
        return tree

    def preexec(self, tree: StepTree, then: Callable[[], None] | None) -> Callable[[], None] | None:
        """What a child that runs code between fork and exec anyway (rlimits, a forked sub-DAG
        supervisor) runs there: join the step's cgroup, then `then`.  Only os-level calls: the
        child of a threaded parent must not take locks."""
        procs = os.path.join(tree.cgroup, "cgroup.procs") if tree.cgroup is not None else None
        if procs is None:
            return then

        def child() -> None:
            fd = os.open(procs, os.O_WRONLY)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)
            if then is not None:
                then()

        return child

    def joining(self, tree: StepTree, argv: list[str], env: dict[str, str]) -> list[str] | None:
        """`argv` prefixed so that its process joins the step's cgroup before it runs, or None
        when it needs no prefix (no cgroup) or cannot have one (no /bin/sh: use `preexec`)."""
        if tree.cgroup is None or not os.access(_SHELL, os.X_OK):
            return None
        procs = os.path.join(tree.cgroup, "cgroup.procs")
        script_at = _shell_script_index(argv)
        if script_at is not None:
            return [*argv[:script_at], _JOIN_LINE.format(procs=shlex.quote(procs)) + argv[script_at],
                    *argv[script_at + 1:]]
        if "PWD" in env:
            return [_SHELL, "-c", _JOIN_PWD, procs, env["PWD"], *argv]
        return [_SHELL, "-c", _JOIN_NO_PWD, procs, *argv]

    def started(self, tree: StepTree, pid: int) -> None:
        tree.leader = pid
        if tree.cgroup is None:  # a cgroup needs neither: its membership is exact, and the watchdog
            stat = read_stat(pid)  # finds the tree in the run's directory
            tree.leader_start = stat.start if stat is not None else 0
            self.watchdog.leader(pid, tree.leader_start)

    def members(self, tree: StepTree) -> list[int]:
        """The tree's live processes (zombies left out: they hold nothing and cannot be killed)."""
        if tree.cgroup is not None:
            return _cgroup_members(tree.cgroup)
        if tree.emptied:
            return []
        return self._session_members(tree)

    def left_behind(self, tree: StepTree) -> list[int]:
        """`members`, once the leader is reaped.  An empty cgroup is kept for the next attempt
        (`prepare`), and the tree is over."""
        if tree.cgroup is not None:
            populated = _populated(tree.cgroup)
            alive = [] if populated is False else _cgroup_members(tree.cgroup)
            if populated is False or (populated is None and not alive):
                if len(self._idle) < _IDLE_KEPT:
                    self._idle.append(tree.cgroup)
                else:
                    kill_cgroup(tree.cgroup)
                tree.cgroup, tree.emptied = None, True
            return alive  # populated with no member of its own: a sub-run's cgroup under it, see release
        if tree.emptied:
            return []
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
        if sig == signal.SIGKILL and tree.cgroup is not None \
                and _write(os.path.join(tree.cgroup, "cgroup.kill"), "1"):
            return len(self.members(tree))
        pids = self.members(tree)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        return len(pids)

    def release(self, tree: StepTree) -> None:
        """The attempt is over: kill anything left (there should be nothing) and remove the cgroup."""
        if tree.cgroup is not None:
            kill_cgroup(tree.cgroup)
            tree.cgroup = None
        elif tree.leader and not tree.emptied:
            self.watchdog.gone(tree.leader)

    def no_more_processes(self) -> None:
        """Every attempt of the run is over and reaped: the watchdog may go (process/watchdog.py)."""
        self.watchdog.dismiss()

    def close(self) -> None:
        """The run is over: stop the watchdog and remove the run's cgroup directory with the step
        cgroups in it (empty by now: every attempt was reaped; were one not, what it left dies
        here, as it would with the watchdog)."""
        self.watchdog.close()
        for path in self._idle:
            try:
                os.rmdir(path)
            except OSError:
                pass  # whatever is in it: the next line kills it
        self._idle.clear()
        if self._run_dir_made and self.run_dir is not None:
            kill_cgroup(self.run_dir)
        self._run_dir_made = False


def _write(path: str, value: str) -> bool:
    try:
        write_text(path, value)
        return True
    except OSError:
        return False


def _mkdir_exist_ok(path: str) -> None:
    """mkdir, where an existing directory is fine: a run's cgroup directory may be left by a
    supervisor of the run that crashed."""
    try:
        os.mkdir(path)
    except OSError:
        if not os.path.isdir(path):
            raise


def _sub_cgroups(path: str) -> list[str]:
    """The child cgroups of `path` (directories; its knobs are files), none if it is gone."""
    if not os.path.isdir(path):
        return []
    with os.scandir(path) as entries:
        return [entry.path for entry in entries if entry.is_dir()]


def kill_cgroup(path: str, timeout: float = 2.0) -> int:
    """SIGKILL every process in a cgroup (and its child cgroups), then remove them; how many
    processes there were.  Never raises: a cgroup that will not go is logged."""
    try:
        os.rmdir(path)  # the usual end of a step: nothing left in it, no sub-run cgroups under it
        return 0
    except FileNotFoundError:
        return 0
    except OSError:
        pass
    killed = 0
    for sub in sorted(_sub_cgroups(path), reverse=True):
        killed += kill_cgroup(sub, timeout)
    deadline = time.monotonic() + timeout
    while True:
        members = _cgroup_members(path)
        killed = max(killed, len(members))
        if not _write(os.path.join(path, "cgroup.kill"), "1"):
            for pid in members:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        try:
            os.rmdir(path)
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
        base, _ = probe(mechanism)
        if base is not None:
            for sub in _sub_cgroups(os.path.join(base, run_cgroup_name(run_path))):
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
        base, _ = probe(mechanism)
        if base is not None:
            run_dir = os.path.join(base, run_cgroup_name(run_path))
            if os.path.isdir(run_dir):
                kill_cgroup(run_dir)
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
