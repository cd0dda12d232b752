"""Reading /proc quickly: the few fields of a process the sampler and the step trees need.

Small files are read with one os.read (no Python file objects), and a held descriptor is
re-read with pread: this runs every ~50 ms for every process of every running step.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable

from dagu.spec.records import dataclass

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096



@dataclass(slots=True)
class _Stat:
    """The fields of /proc/PID/stat the sampler uses."""

    state: str
    ppid: int
    session: int
    threads: int
    start: int  # start time in clock ticks since boot: tells a reused pid from the process we knew
    rss_bytes: int
    user_ticks: int  # utime + cutime (the latter: reaped children)
    sys_ticks: int  # stime + cstime


def _read(path: str, size: int = 4096) -> bytes | None:
    """The whole of a small /proc file, or None if the process is gone or unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        chunks = []
        while chunk := os.read(fd, size):
            chunks.append(chunk)
            if len(chunk) < size:
                break
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def parse_stat(data: bytes) -> _Stat | None:
    """Parse the text of /proc/PID/stat."""
    # The command name is in parentheses and may itself hold spaces and parentheses.
    fields = data[data.rfind(b")") + 2:].split()
    try:
        return _Stat(
            state=fields[0].decode(), ppid=int(fields[1]), session=int(fields[3]),
            threads=int(fields[17]), start=int(fields[19]), rss_bytes=int(fields[21]) * _PAGE_SIZE,
            user_ticks=int(fields[11]) + int(fields[13]), sys_ticks=int(fields[12]) + int(fields[14]),
        )
    except (IndexError, ValueError):
        return None


def read_stat(pid: int) -> _Stat | None:
    """/proc/PID/stat; None when the process has vanished."""
    data = _read(f"/proc/{pid}/stat")
    return parse_stat(data) if data else None


def _pread(fd: int, size: int = 4096) -> bytes | None:
    """Re-read a held /proc file: one syscall instead of three, and an error (not a stranger's
    data) once the process it was opened for is reaped, whatever reuses its pid."""
    try:
        return os.pread(fd, size, 0)
    except OSError:
        return None


def read_io(pid: int) -> tuple[int, int] | None:
    """(read_bytes, write_bytes) from /proc/PID/io: bytes that reached or came from storage."""
    data = _read(f"/proc/{pid}/io")
    if not data:
        return None
    values = {}
    for line in data.split(b"\n"):
        key, _, value = line.partition(b":")
        values[key] = value
    try:
        return int(values[b"read_bytes"]), int(values[b"write_bytes"])
    except (KeyError, ValueError):
        return None


@functools.cache
def proc_available() -> bool:
    """Whether this host has a Linux /proc to sample."""
    return os.path.exists("/proc/self/stat")


@functools.cache
def children_files_available() -> bool:
    """Whether the kernel has /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN, on by default)."""
    return os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


def read_children(pid: int, threads: int) -> list[int]:
    """The direct children of a process, from each of its threads' children file.

    A child belongs to the thread that forked it, so a multi-threaded parent (a Go program, a
    Python pool) needs every thread's file; a single-threaded one needs one read.
    """
    if threads <= 1:
        tids: Iterable[str] = (str(pid),)
    else:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return []
    children = []
    for tid in tids:
        data = _read(f"/proc/{pid}/task/{tid}/children", 65536)
        if data:
            children.extend(int(c) for c in data.split())
    return children


def scan_processes() -> dict[int, _Stat]:
    """Every process on the host: used for session sweeps, and for trees when the kernel lacks
    children files."""
    found = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        if name.isdigit():
            stat = read_stat(int(name))
            if stat is not None:
                found[int(name)] = stat
    return found
