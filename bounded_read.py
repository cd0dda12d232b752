"""Read a file that someone else controls: regular files only, never more than a limit.

Why: a FIFO named `x.yaml` in a DAGs folder blocked `dagu validate`, and the
scheduler, in `open()` forever; a symlink to /dev/zero read until MemoryError.
Every reader of user-supplied files (workflow YAML, base config, dotenv,
DAG folders the scheduler scans) goes through `read_regular`, which opens
without blocking, checks that the file is regular and bounds what it reads.
"""

from __future__ import annotations

import os
import stat

MAX_WORKFLOW_BYTES = 16 * 1024 * 1024  # a 10,000-step workflow is about 0.6 MiB


class RefusedFile(OSError):
    """The path is not a regular file, or is larger than the reader allows; `reason` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.strerror = reason


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "not a regular file"


def read_regular(path: str, limit: int = MAX_WORKFLOW_BYTES) -> bytes:
    """The bytes of the regular file at `path` (symlinks followed), at most `limit` of them.

    Raises RefusedFile for anything else, OSError when it cannot be opened.  The
    open is non-blocking, so a FIFO without a writer is refused instead of waited on.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RefusedFile(f"{_kind(info.st_mode)}, not a regular file; dagu reads only regular files here")
        if info.st_size > limit:
            raise RefusedFile(f"{info.st_size} bytes, over the {limit} byte limit for this kind of file")
        chunks, size = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:  # it grew while we read it
                raise RefusedFile(f"more than {limit} bytes, over the limit for this kind of file")
        return b"".join(chunks)
    finally:
        os.close(fd)
