"""Where this process's cgroups are: the mounts of each hierarchy and our own place in them.

Shared by the memory guard (process/limits.py), which needs a hierarchy with the memory
controller, and the step trees (process/tree.py), which only need a hierarchy in which they may
make directories.  Reading /proc/self/mountinfo rather than assuming /sys/fs/cgroup keeps both
working in containers that mount cgroups elsewhere or show only part of a hierarchy.
"""

from __future__ import annotations

import os

import re
from pathlib import Path

Mount = tuple[str, str, str]
"""(mount point, root of the hierarchy shown there, super options such as "rw,memory")."""


def _unescape(text: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (\\040)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def mounts(fstype: str) -> list[Mount]:
    """Each mount of `fstype` ("cgroup" or "cgroup2")."""
    found: list[Mount] = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        left, _, right = line.partition(" - ")
        parts, tail = left.split(), right.split()
        if len(parts) >= 5 and len(tail) >= 3 and tail[0] == fstype:
            found.append((_unescape(parts[4]), _unescape(parts[3]), tail[2]))
    return found


def own_cgroup(controller: str | None) -> str | None:
    """This process's cgroup path for a v1 controller, or the v2 path when controller is None."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if (controller is None and controllers == "") or \
                (controller is not None and controller in controllers.split(",")):
            return path
    return None


def cgroup_dir(mount: Mount, path: str) -> Path:
    """The directory of cgroup `path` under `mount`, whose own root may be a sub-path."""
    point, root, _ = mount
    if root != "/" and (path == root or path.startswith(root + "/")):
        path = path[len(root):]
    return Path(point) / path.lstrip("/")


def probe_child(base: Path, limit_file: str | None = None) -> str | None:
    """Create (and remove) a probe cgroup under `base`, optionally setting `limit_file` in it:
    None when that works, else why not.  The one check of whether dagu may make cgroups here."""
    probe = base / f"dagu-probe-{os.getpid()}"
    try:
        probe.mkdir()
    except OSError as exc:
        return f"cannot create a cgroup in {base}: {exc.strerror}"
    try:
        if limit_file is not None:
            if not (probe / limit_file).exists():
                return f"{probe} has no {limit_file}"
            (probe / limit_file).write_text(str(1 << 40))
        return None
    except OSError as exc:
        return f"cannot set {limit_file} in {base}: {exc.strerror}"
    finally:
        try:
            probe.rmdir()
        except OSError:
            pass
