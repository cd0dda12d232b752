"""Where this process's cgroups are: the mounts of each hierarchy and our own place in them.

Shared by the memory guard (process/limits.py), which needs a hierarchy with the memory
controller, and the step trees (process/tree.py), which only need a hierarchy in which they may
make directories.  Reading /proc/self/mountinfo rather than assuming /sys/fs/cgroup keeps both
working in containers that mount cgroups elsewhere or show only part of a hierarchy.

Paths are plain strings, joined with os.path and read with open(), not `Path` objects: every
`dagu start` runs this code, and importing the module behind `Path` (with urllib.parse, fnmatch
and ntpath behind that) would cost ~3 ms of a small run (issue 17).
"""

from __future__ import annotations

import os
import re

Mount = tuple[str, str, str]
"""(mount point, root of the hierarchy shown there, super options such as "rw,memory")."""

Probe = tuple[str | None, str | None]
"""What probing a mechanism found: (directory, None) when its cgroups can go under directory,
(None, why not) when this host cannot use it, and (None, None) for a mechanism that needs no
cgroup at all.  A pair rather than "a directory or a reason", since both are strings."""


def read_text(path: str) -> str:
    """The whole of a (small) text file, as `Path.read_text` would read it (raises OSError)."""
    with open(path) as fh:
        return fh.read()


def write_text(path: str, value: str) -> None:
    """Write a cgroup knob (or any small file) whole, as `Path.write_text` would (raises OSError)."""
    with open(path, "w") as fh:
        fh.write(value)


def _unescape(text: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (\\040)."""
    if "\\" not in text:  # the usual case: no pattern to compile at every start
        return text
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def mounts(fstype: str) -> list[Mount]:
    """Each mount of `fstype` ("cgroup" or "cgroup2")."""
    found: list[Mount] = []
    try:
        lines = read_text("/proc/self/mountinfo").splitlines()
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
        lines = read_text("/proc/self/cgroup").splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if (controller is None and controllers == "") or \
                (controller is not None and controller in controllers.split(",")):
            return path
    return None


def cgroup_dir(mount: Mount, path: str) -> str:
    """The directory of cgroup `path` under `mount`, whose own root may be a sub-path.  The
    mount point itself for the hierarchy's root, without a trailing slash: the directory is
    named in messages, and joined onto."""
    point, root, _ = mount
    if root != "/" and (path == root or path.startswith(root + "/")):
        path = path[len(root):]
    path = path.lstrip("/")
    return os.path.join(point, path) if path else point


def probe_child(base: str, limit_file: str | None = None) -> str | None:
    """Create (and remove) a probe cgroup under `base`, optionally setting `limit_file` in it:
    None when that works, else why not.  The one check of whether dagu may make cgroups here."""
    probe = os.path.join(base, f"dagu-probe-{os.getpid()}")
    try:
        os.mkdir(probe)
    except OSError as exc:
        return f"cannot create a cgroup in {base}: {exc.strerror}"
    try:
        if limit_file is not None:
            knob = os.path.join(probe, limit_file)
            if not os.path.exists(knob):
                return f"{probe} has no {limit_file}"
            write_text(knob, str(1 << 40))
        return None
    except OSError as exc:
        return f"cannot set {limit_file} in {base}: {exc.strerror}"
    finally:
        try:
            os.rmdir(probe)
        except OSError:
            pass
