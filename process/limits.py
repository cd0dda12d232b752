"""Resource limits of a step's processes: what the workflow asked for, and how the host enforces it.

CPU time, open files, file size and process count are kernel rlimits, set in the child between
fork and exec and inherited by everything it starts.  Memory is different: RLIMIT_AS limits
*virtual* memory, which Go and JVM programs reserve by the gigabyte without using, so it would
kill healthy programs; and RLIMIT_RSS is not enforced by Linux at all.  So `MemoryGuard` limits
the resident memory of the whole tree with the best mechanism the host has, chosen once by
probing: a cgroup v2 with the memory controller, a cgroup v1 memory hierarchy, or, when neither
is writable, the accounting sampler killing the tree once its summed RSS goes over.  The last
one is a watchdog, not a wall: a tree can overshoot by what it allocates within one sampling
interval (~50 ms).

A step that dies of a limit fails with a message naming it (`describe_failure`), since
"killed by signal 24" helps nobody.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import resource
import signal
import time
from dataclasses import fields
from collections.abc import Callable, Mapping

from dagu.process.lazy_log import LazyLogger
from dagu.spec.digest import sha1_hex
from dagu.spec.records import dataclass
from dagu.process.cgroup import Probe, cgroup_dir, mounts, own_cgroup, probe_child, read_text, write_text

log = LazyLogger(__name__)

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*(?:([KMGTkmgt])(?:[iI])?)?[Bb]?$")


class LimitError(RuntimeError):
    """A limit that cannot be applied on this host, with the reason."""


@dataclass(frozen=True)
class Limits:
    """Resource limits for one step attempt; None means "not limited"."""

    memory_bytes: int | None = None
    cpu_sec: int | None = None
    open_files: int | None = None
    file_size_bytes: int | None = None
    processes: int | None = None

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))


def parse_size(value: int | str) -> int:
    """Bytes from an integer or a string such as "512M", "2G", "64K", "1.5GiB", "100MB".

    Every unit is binary (K = KB = KiB = 1024): sizes here are memory and file limits, where
    docker, ulimit and the JVM all count in powers of two, and one rule is easier to remember
    than telling "MB" from "MiB".
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"invalid size {value!r}: expected a number of bytes or a string like '512M'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"invalid size {value}: must not be negative")
        return value
    match = _SIZE.match(value.strip())
    if not match:
        raise ValueError(f"invalid size {value!r}: expected bytes, or a number with a unit "
                         "K, M, G or T (e.g. 64K, 512M, 1.5GiB, 100MB)")
    number, unit = match.group(1), (match.group(2) or "").upper()
    size = float(number) * _UNITS[unit]
    if not unit and "." in number:
        raise ValueError(f"invalid size {value!r}: a number of bytes must be whole")
    return int(round(size))


def format_size(size: int) -> str:
    """"100 MiB", "1.5 GiB", "512 bytes": for messages."""
    for unit in ("T", "G", "M", "K"):
        scale = _UNITS[unit]
        if size >= scale:
            amount = size / scale
            text = f"{amount:.0f}" if size % scale == 0 else f"{amount:.1f}"
            return f"{text} {unit}iB"
    return f"{size} bytes"


_LIMIT_KEYS = {"memory": "memory_bytes", "cpu_sec": "cpu_sec", "open_files": "open_files",
               "file_size": "file_size_bytes", "processes": "processes"}


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"limits.{name} must be a positive integer, got {value!r}")
    return value


def limits_from(dag_settings: Mapping[str, object], step_options: Mapping[str, object]) -> Limits:
    """The limits of one step: the DAG's `limits`, overridden key by key by the step's."""
    merged: dict[str, object] = {}
    for source in (dag_settings, step_options):
        block = source.get("limits") or {}
        if not isinstance(block, Mapping):
            raise ValueError(f"limits must be a mapping, got {type(block).__name__}")
        for key, value in block.items():
            if key not in _LIMIT_KEYS:
                raise ValueError(f"unknown limit {key!r}: expected one of {', '.join(_LIMIT_KEYS)}")
            if value is not None:
                merged[key] = value
    values: dict[str, int] = {}
    for key, value in merged.items():
        if key in ("memory", "file_size"):
            try:
                values[_LIMIT_KEYS[key]] = parse_size(value)  # type: ignore[arg-type]
            except ValueError as exc:
                raise ValueError(f"limits.{key}: {exc}") from None
        else:
            values[_LIMIT_KEYS[key]] = _count(key, value)
    return Limits(**values)


# --------------------------------------------------------------------------
# rlimits
# --------------------------------------------------------------------------


def rlimits_for(limits: Limits) -> list[tuple[int, int, int]]:
    """(resource, soft, hard) to set in the child, checked here in the parent so an impossible
    request fails with a message rather than as "Exception occurred in preexec_fn"."""
    wanted = []
    if limits.cpu_sec is not None:
        # SIGXCPU at the soft limit; one more second to clean up before SIGKILL at the hard one.
        wanted.append((resource.RLIMIT_CPU, limits.cpu_sec, limits.cpu_sec + 1, "cpu_sec"))
    if limits.open_files is not None:
        wanted.append((resource.RLIMIT_NOFILE, limits.open_files, limits.open_files, "open_files"))
    if limits.file_size_bytes is not None:
        size = limits.file_size_bytes
        wanted.append((resource.RLIMIT_FSIZE, size, size, "file_size"))
    if limits.processes is not None:
        wanted.append((resource.RLIMIT_NPROC, limits.processes, limits.processes, "processes"))
    out = []
    for res, soft, hard, name in wanted:
        _, current_hard = resource.getrlimit(res)
        if current_hard != resource.RLIM_INFINITY and hard > current_hard and not _can_raise_hard():
            if soft > current_hard:
                raise LimitError(f"limits.{name} of {soft} is above this host's hard limit of "
                                 f"{current_hard}, which only a process with CAP_SYS_RESOURCE "
                                 "may raise")
            hard = current_hard
        out.append((res, soft, hard))
    return out


_CAP_SYS_RESOURCE = 24


def _can_raise_hard() -> bool:
    """Whether this process may raise hard rlimits: CAP_SYS_RESOURCE, which root usually has
    but a container's root may not."""
    try:
        for line in read_text("/proc/self/status").splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> _CAP_SYS_RESOURCE & 1)
    except (OSError, ValueError):
        pass
    return os.geteuid() == 0


def preexec_for(limits: Limits) -> Callable[[], None] | None:
    """A `preexec_fn` setting the rlimits in the child, or None when there are none, so Popen
    keeps its fast vfork path.  Never RLIMIT_AS: see the module docstring."""
    settings = rlimits_for(limits)
    if not settings:
        return None

    def apply() -> None:
        for res, soft, hard in settings:
            resource.setrlimit(res, (soft, hard))

    return apply


# --------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------


def _usable(base: str, limit_file: str) -> Probe:
    """(base, None) if a cgroup with `limit_file` set can be made under it, else (None, why not)."""
    why = probe_child(base, limit_file)
    return (None, why) if why else (base, None)


@functools.cache
def probe_cgroup_v2() -> Probe:
    """(the cgroup v2 directory under which steps get their own memory cgroups, None), or
    (None, why none)."""
    found = mounts("cgroup2")
    own = own_cgroup(None)
    if not found or own is None:
        return None, "no cgroup v2 hierarchy is mounted"
    base = cgroup_dir(found[0], own)
    controllers = os.path.join(base, "cgroup.controllers")
    try:
        available = read_text(controllers).split()
    except OSError as exc:
        return None, f"cannot read {controllers}: {exc.strerror}"
    if "memory" not in available:
        return None, f"the memory controller is not available in {base} (not delegated, or bound to cgroup v1)"
    control = os.path.join(base, "cgroup.subtree_control")
    try:
        if "memory" not in read_text(control).split():
            write_text(control, "+memory")
    except OSError as exc:
        return None, (f"cannot enable the memory controller for children of {base}: {exc.strerror} "
                      "(run dagu in a delegated cgroup, e.g. systemd Delegate=yes)")
    return _usable(base, "memory.max")


@functools.cache
def probe_cgroup_v1() -> Probe:
    """(the cgroup v1 memory directory under which steps get their own cgroups, None), or
    (None, why none)."""
    found = [m for m in mounts("cgroup") if "memory" in m[2].split(",")]
    own = own_cgroup("memory")
    if not found or own is None:
        return None, "no cgroup v1 memory hierarchy is mounted"
    return _usable(cgroup_dir(found[0], own), "memory.limit_in_bytes")


MECHANISMS = ("cgroup-v2", "cgroup-v1", "sampler")


def probe_memory(mechanism: str) -> Probe:
    """For one mechanism: (its cgroup base directory, None), (None, None) for the sampler, which
    needs no cgroup, or (None, why unavailable)."""
    if mechanism == "cgroup-v2":
        return probe_cgroup_v2()
    if mechanism == "cgroup-v1":
        return probe_cgroup_v1()
    if mechanism == "sampler":
        return None, None
    raise ValueError(f"unknown memory mechanism {mechanism!r}: expected one of {', '.join(MECHANISMS)}")


def _read_counter(path: str, key: str) -> int | None:
    """The value of `key N` in a flat-keyed cgroup file such as memory.events."""
    try:
        for line in read_text(path).splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return None


class MemoryGuard:
    """Enforces Limits.memory_bytes by the best mechanism the host has, chosen once by probing:
    a writable cgroup v2 with the memory controller, else a writable cgroup v1 memory hierarchy,
    else the Sampler killing the tree over its RSS.

    Per-step cgroups are made inside the supervisor's own cgroup, so whatever limits the
    supervisor is under still apply to its steps.  With the "sampler" mechanism `start` and
    `finish` do nothing: the supervisor passes `sampler_limit(...)` to `Sampler.watch` and kills
    the process group from `on_over_limit`.

    The pid joins its cgroup just after spawn (Popen cannot spawn into a cgroup), so there is a
    small race: the child may fork before `start` runs.  `start` therefore moves the pid first
    (its later children are born inside) and then every descendant it can see, which leaves out
    only a process that was forked and orphaned within those first microseconds.
    """

    def __init__(self, mechanism: str | None = None) -> None:
        """Probe and pick the first available mechanism, or insist on `mechanism` (LimitError
        with the reason when this host lacks it)."""
        self.reasons: dict[str, str] = {}  # why each better mechanism was not chosen
        self._base: str | None = None  # the directory step cgroups go under; None for the sampler
        self._active: dict[str, str] = {}  # key -> its step cgroup's directory
        for candidate in (mechanism,) if mechanism else MECHANISMS:
            base, why = probe_memory(candidate)
            if why is not None:
                self.reasons[candidate] = why
                continue
            self.mechanism, self._base = candidate, base
            return
        raise LimitError(f"memory mechanism {mechanism} is not available: {self.reasons[mechanism]}")

    def sampler_limit(self, limit_bytes: int | None) -> int | None:
        """The RSS limit the supervisor should give `Sampler.watch`: the limit itself when the
        sampler is the mechanism, else None (the cgroup enforces it)."""
        return limit_bytes if self.mechanism == "sampler" else None

    def cgroup_name(self, key: str) -> str:
        """A directory name for `key` (a run id / step / attempt): readable, and unique even
        when two keys differ only in characters a directory name cannot hold."""
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", key)[:80]
        return f"dagu-{safe}-{sha1_hex(key.encode())[:8]}"

    def start(self, key: str, limit_bytes: int, pid: int) -> None:
        """Put `pid` (and its descendants so far) in a fresh cgroup limited to limit_bytes."""
        if self._base is None:
            return
        path = os.path.join(self._base, self.cgroup_name(key))
        if os.path.exists(path):
            self._remove(path)  # left by a supervisor that crashed mid-step
        try:
            os.mkdir(path)
        except OSError as exc:
            raise LimitError(f"cannot create memory cgroup {path}: {exc.strerror}") from None
        self._active[key] = path
        try:
            if self.mechanism == "cgroup-v2":
                write_text(os.path.join(path, "memory.max"), str(limit_bytes))
                self._write_optional(os.path.join(path, "memory.swap.max"), "0")
                self._write_optional(os.path.join(path, "memory.oom.group"), "1")  # kill the tree, not one process
            else:
                write_text(os.path.join(path, "memory.limit_in_bytes"), str(limit_bytes))
                self._write_optional(os.path.join(path, "memory.memsw.limit_in_bytes"), str(limit_bytes))
            self._join(path, pid)
            # Whatever pid forks from now on is born inside; what it forked before is moved.
            # Repeat until a pass finds nobody new, since those children may fork meanwhile.
            moved = {pid}
            for _ in range(5):
                new = [d for d in _descendants(pid) if d not in moved]
                if not new:
                    break
                for member in new:
                    self._join(path, member)
                moved.update(new)
        except OSError as exc:
            self.finish(key)
            raise LimitError(f"cannot apply the memory limit with {path}: {exc.strerror}") from None

    def finish(self, key: str) -> bool:
        """Whether the step's cgroup recorded an OOM kill; then remove the cgroup.

        Processes still in it (escaped the process group, e.g. by setsid) are killed first:
        a cgroup with members cannot be removed, and they belong to a step that has ended.
        """
        path = self._active.pop(key, None)
        if path is None:
            return False
        if self.mechanism == "cgroup-v2":
            oom = _read_counter(os.path.join(path, "memory.events"), "oom_kill")
        else:
            oom = _read_counter(os.path.join(path, "memory.oom_control"), "oom_kill")
            if oom is None:  # kernels before 4.13: hitting the limit is the best evidence
                oom = self._failcnt(path)
        self._remove(path)
        return bool(oom)

    @staticmethod
    def _join(path: str, pid: int) -> None:
        try:
            write_text(os.path.join(path, "cgroup.procs"), str(pid))
        except OSError as exc:
            if exc.errno != errno.ESRCH:  # already gone: nothing to limit
                raise

    @staticmethod
    def _failcnt(path: str) -> int:
        try:
            return int(read_text(os.path.join(path, "memory.failcnt")))
        except (OSError, ValueError):
            return 0

    @staticmethod
    def _write_optional(path: str, value: str) -> None:
        """Write a knob this kernel may lack (no swap accounting, an older kernel)."""
        try:
            write_text(path, value)
        except OSError:
            pass

    def _remove(self, path: str) -> None:
        """Kill whatever is left in the cgroup and remove it; log, never raise."""
        deadline = time.monotonic() + 2.0
        while True:
            try:
                os.rmdir(path)
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    log.warning("could not remove cgroup %s: %s", path, exc.strerror)
                    return
            if not self._write_kill(path):
                try:
                    members = read_text(os.path.join(path, "cgroup.procs")).split()
                except OSError:
                    members = []
                for member in members:
                    try:
                        os.kill(int(member), signal.SIGKILL)
                    except (OSError, ValueError):
                        pass
            time.sleep(0.01)

    @staticmethod
    def _write_kill(path: str) -> bool:
        """cgroup v2's cgroup.kill (Linux 5.14+) kills every member at once."""
        try:
            write_text(os.path.join(path, "cgroup.kill"), "1")
            return True
        except OSError:
            return False


def _descendants(pid: int) -> list[int]:
    """The descendants of pid visible right now (children files; empty if unsupported)."""
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        try:
            tids = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                children = read_text(f"/proc/{current}/task/{tid}/children").split()
            except OSError:
                continue
            for child in children:
                found.append(int(child))
                stack.append(int(child))
    return found


# --------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------


def _signal_of(returncode: int) -> tuple[int, str] | None:
    """(signal, how reported): Popen's -N, or 128+N as a shell (or bwrap) reports a killed child."""
    if returncode < 0:
        return -returncode, ""
    if 128 < returncode < 128 + 65:
        return returncode - 128, f" (exit status {returncode} from a shell)"
    return None


def describe_failure(limits: Limits, returncode: int, oom_killed: bool, over_rss: bool,
                     mechanism: str | None = None, over_cpu: bool = False) -> str | None:
    """Why a failed step died, when a limit explains it; None when it does not (or it succeeded).

    `oom_killed` comes from `MemoryGuard.finish`, `over_rss` from the sampler's on_over_limit;
    `mechanism` names what enforced memory (default: "cgroup" or "sampler" accordingly);
    `over_cpu`: the sampler found the whole tree over limits.cpu_sec (even if the leader
    then exited 0, the step did not finish within its limit).
    """
    if over_cpu and limits.cpu_sec is not None:
        return (f"CPU time limit of {limits.cpu_sec} s exceeded by the step's processes together "
                "(limits.cpu_sec); they were killed")
    if returncode == 0:
        return None
    if (oom_killed or over_rss) and limits.memory_bytes is not None:
        by = mechanism or ("cgroup" if oom_killed else "sampler")
        return (f"memory limit of {format_size(limits.memory_bytes)} exceeded "
                f"(limits.memory, enforced by {by})")
    killed = _signal_of(returncode)
    if killed is None:
        return None
    signum, how = killed
    if signum == signal.SIGXCPU and limits.cpu_sec is not None:
        return (f"killed by SIGXCPU{how}: CPU time limit of {limits.cpu_sec} s exceeded "
                "(limits.cpu_sec)")
    if signum == signal.SIGXFSZ and limits.file_size_bytes is not None:
        return (f"killed by SIGXFSZ{how}: file size limit of {format_size(limits.file_size_bytes)} "
                "exceeded (limits.file_size)")
    return None
