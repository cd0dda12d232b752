"""sftp steps: upload or download a file or a directory tree over SFTP (paramiko).

What a transfer guarantees, and why:

- **No half-written target.**  Each file is written under a temporary name beside its target
  (`.NAME.dagu-tmp-XXXX`) and renamed over the final name only once it is complete: remotely with
  the `posix-rename@openssh.com` extension (atomic, replaces an existing file), locally with
  `os.replace`.  A transfer stopped midway (a `dagu stop`, a timeout, a dropped connection)
  removes its temporary file and leaves the target as it was.
- **Permissions and mtimes kept**, for files and directories (a directory's after its contents,
  since writing into it changes its mtime).
- **`overwrite: false`** refuses a target that exists, before anything is written: for a directory,
  any file of the tree that exists on the other side.
- Progress is logged per file; the output is a JSON summary (`${step.output.files}`, `bytes`).
"""

from __future__ import annotations

import json
import os
import posixpath
import secrets
import stat
from dataclasses import field
from typing import Any, Callable, Iterator

from dagu.spec.records import dataclass
from dagu.executors.base import Cancellation, StepIO, StepRequest, StepResult
from dagu.executors.ssh_connect import POOL, ConnectError, settings_from

CHUNK = 32768
PREFETCH_REQUESTS = 64  # reads in flight per downloaded file (of 32 KiB each)


class TransferError(Exception):
    """A transfer cannot go on; the message is the step's error."""


class Stopped(Exception):
    """The step was stopped midway."""


@dataclass
class Plan:
    """Files and directories to create, as (source, target, mode, atime, mtime)."""

    dirs: list[tuple[str, str, int, float, float]] = field(default_factory=list)
    files: list[tuple[str, str, int, float, float, int]] = field(default_factory=list)


def _tmp_name(target: str, join: Callable[..., str], split: Callable[[str], tuple[str, str]]) -> str:
    head, tail = split(target)
    return join(head, f".{tail}.dagu-tmp-{secrets.token_hex(4)}")


class _Side:
    """One end of a transfer (the local filesystem, or the remote one through SFTP)."""

    def stat(self, path: str) -> Any | None: ...
    def listdir(self, path: str) -> list[str]: ...
    def open_read(self, path: str) -> Any: ...
    def open_write(self, path: str) -> Any: ...
    def mkdir(self, path: str) -> None: ...
    def finish(self, tmp: str, target: str, mode: int, atime: float, mtime: float) -> None: ...
    def set_meta(self, path: str, mode: int, atime: float, mtime: float) -> None: ...
    def remove(self, path: str) -> None: ...
    join: Callable[..., str]
    split: Callable[[str], tuple[str, str]]


class Local(_Side):
    join = staticmethod(os.path.join)
    split = staticmethod(os.path.split)

    def stat(self, path: str) -> Any | None:
        try:
            return os.stat(path)
        except FileNotFoundError:
            return None

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(path))

    def open_read(self, path: str) -> Any:
        return open(path, "rb")

    def open_write(self, path: str) -> Any:
        return open(path, "xb")

    def mkdir(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def finish(self, tmp: str, target: str, mode: int, atime: float, mtime: float) -> None:
        self.set_meta(tmp, mode, atime, mtime)
        os.replace(tmp, target)

    def set_meta(self, path: str, mode: int, atime: float, mtime: float) -> None:
        os.chmod(path, stat.S_IMODE(mode))
        os.utime(path, (atime, mtime))

    def remove(self, path: str) -> None:
        try:
            os.unlink(path)
        except OSError:
            pass


class Remote(_Side):
    join = staticmethod(posixpath.join)
    split = staticmethod(posixpath.split)

    def __init__(self, sftp: Any) -> None:
        self.sftp = sftp

    def stat(self, path: str) -> Any | None:
        try:
            return self.sftp.stat(path)
        except FileNotFoundError:
            return None

    def listdir(self, path: str) -> list[str]:
        return sorted(self.sftp.listdir(path))

    def open_read(self, path: str) -> Any:
        handle = self.sftp.open(path, "rb")
        # read ahead, but boundedly: an unbounded prefetch would buffer the whole file in memory
        # and make a stopped download wait for all of it before the handle closes
        handle.prefetch(max_concurrent_requests=PREFETCH_REQUESTS)
        return handle

    def open_write(self, path: str) -> Any:
        handle = self.sftp.open(path, "wxb")  # w: write, x: fail if it exists
        handle.set_pipelined(True)
        return handle

    def mkdir(self, path: str) -> None:
        parts = []
        while path and path not in ("/", ".") and self.stat(path) is None:
            parts.append(path)
            path = posixpath.dirname(path)
        for p in reversed(parts):
            self.sftp.mkdir(p)

    def finish(self, tmp: str, target: str, mode: int, atime: float, mtime: float) -> None:
        self.set_meta(tmp, mode, atime, mtime)
        self.sftp.posix_rename(tmp, target)

    def set_meta(self, path: str, mode: int, atime: float, mtime: float) -> None:
        self.sftp.chmod(path, stat.S_IMODE(mode))
        self.sftp.utime(path, (atime, mtime))

    def remove(self, path: str) -> None:
        try:
            self.sftp.remove(path)
        except OSError:
            pass


def _walk(side: _Side, src: str, dst: str, dst_side: _Side) -> Iterator[tuple[str, str, Any]]:
    st = side.stat(src)
    if st is None:
        raise TransferError(f"source {src} does not exist")
    yield src, dst, st
    if stat.S_ISDIR(st.st_mode):
        for name in side.listdir(src):
            yield from _walk(side, side.join(src, name), dst_side.join(dst, name), dst_side)


def plan_transfer(src_side: _Side, dst_side: _Side, source: str, destination: str, overwrite: bool) -> Plan:
    """What to create, checked before a byte moves: sources exist, targets may be replaced."""
    plan = Plan()
    for src, dst, st in _walk(src_side, source, destination, dst_side):
        existing = dst_side.stat(dst)
        if stat.S_ISDIR(st.st_mode):
            if existing is not None and not stat.S_ISDIR(existing.st_mode):
                raise TransferError(f"target {dst} exists and is not a directory")
            plan.dirs.append((src, dst, st.st_mode, st.st_atime, st.st_mtime))
        elif stat.S_ISREG(st.st_mode):
            if existing is not None:
                if stat.S_ISDIR(existing.st_mode):
                    raise TransferError(f"target {dst} is a directory; name the file's target path")
                if not overwrite:
                    raise TransferError(f"target {dst} exists and overwrite is false; nothing was transferred")
            plan.files.append((src, dst, st.st_mode, st.st_atime, st.st_mtime, st.st_size))
    return plan


def _copy_file(src_side: _Side, dst_side: _Side, item: tuple, cancel: Cancellation) -> None:
    src, dst, mode, atime, mtime, _size = item
    parent = dst_side.split(dst)[0]
    if parent:
        dst_side.mkdir(parent)
    tmp = _tmp_name(dst, dst_side.join, dst_side.split)
    done = False
    if isinstance(dst_side, Local):  # removed at once on a stop, even if this thread is abandoned
        cancel.on_cancel(lambda: None if done else dst_side.remove(tmp))
    try:
        with src_side.open_read(src) as reader, dst_side.open_write(tmp) as writer:
            while True:
                if cancel.is_set():
                    raise Stopped()
                chunk = reader.read(CHUNK)
                if not chunk:
                    break
                writer.write(chunk)
        dst_side.finish(tmp, dst, mode, atime, mtime)
        done = True
    finally:
        if not done:
            dst_side.remove(tmp)


def transfer(src_side: _Side, dst_side: _Side, plan: Plan, io: StepIO, cancel: Cancellation) -> int:
    """Copy the plan's files; returns the bytes copied."""
    total = 0
    for _src, dst, *_ in plan.dirs:
        dst_side.mkdir(dst)
    for item in plan.files:
        io.out.write(f"{item[0]} -> {item[1]} ({item[5]} bytes)\n")
        _copy_file(src_side, dst_side, item, cancel)
        total += item[5]
    for _src, dst, mode, atime, mtime in reversed(plan.dirs):  # deepest first: children change a dir's mtime
        dst_side.set_meta(dst, mode, atime, mtime)
    return total


def run(request: StepRequest, io: StepIO, cancel: Cancellation) -> StepResult:
    import paramiko  # only when a step of this type runs

    config = request.config
    direction = str(config.get("direction") or "upload")
    source, destination = str(config.get("source") or ""), str(config.get("destination") or "")
    if not source or not destination:
        return StepResult(exit_code=1, error="an sftp step needs with.source and with.destination")
    overwrite = config.get("overwrite", True) is not False
    if direction == "upload":
        source = os.path.join(request.cwd, os.path.expanduser(source))
    else:
        destination = os.path.join(request.cwd, os.path.expanduser(destination))
    try:
        s = settings_from(config, request.parent_env)
        with POOL.lease(s, io.err.write, cancel) as transport:
            try:
                sftp = paramiko.SFTPClient.from_transport(transport)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                transport._dagu_broken = True
                return StepResult(exit_code=1, error=f"sftp {s.where}: cannot start the SFTP subsystem: {exc}; "
                                                     "is `Subsystem sftp` configured in sshd_config?")
            try:
                local, remote = Local(), Remote(sftp)
                src_side, dst_side = (local, remote) if direction == "upload" else (remote, local)
                plan = plan_transfer(src_side, dst_side, source, destination, overwrite)
                total = transfer(src_side, dst_side, plan, io, cancel)
            except Stopped:
                return StepResult(exit_code=1, error=f"sftp {s.where}: stopped; no partial file was left")
            except TransferError as exc:
                return StepResult(exit_code=1, error=f"sftp {s.where}: {exc}")
            except (paramiko.SSHException, EOFError) as exc:
                transport._dagu_broken = True
                return StepResult(exit_code=1, error=f"sftp {s.where}: the transfer failed: {exc or type(exc).__name__}")
            except OSError as exc:
                where = getattr(exc, "filename", None)
                return StepResult(exit_code=1, error=f"sftp {s.where}: {direction} failed"
                                                     f"{f' at {where}' if where else ''}: {exc.strerror or exc}")
            finally:
                sftp.close()
    except ConnectError as exc:
        return StepResult(exit_code=1, error=str(exc).replace("ssh ", "sftp ", 1))
    summary = {"direction": direction, "files": len(plan.files), "dirs": len(plan.dirs), "bytes": total,
               "source": source, "destination": destination}
    io.err.write(f"sftp {s.where}: {direction} of {len(plan.files)} file(s), {total} bytes done\n")
    return StepResult(exit_code=0, output=json.dumps(summary))
