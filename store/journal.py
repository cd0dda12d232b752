"""A run's journal: the append-only event log (`journal.jsonl`), its writer and its reader.

Three rules keep one damaged or unwritable record from costing more than itself:

- the reader checks every event (store/records.py) and reports a bad one as
  `path:line: what is wrong`, then goes on with the next;
- the writer never appends onto a torn last line (a crash mid-write): before
  its first write it moves the torn bytes to `journal.jsonl.torn` beside the
  journal (kept as evidence) and cuts the journal back to its last complete
  line, so the torn text can never merge with a new record;
- a write that fails (the disk is full) is cut back to where it started, and
  its events stay in memory with the first error (`pending`, `error`) until a
  later `flush` succeeds: the cause of a failure is written once there is room.
"""

from __future__ import annotations

import errno
import json
import os

from dagu.store.records import RecordError, check_event

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any

TORN_SUFFIX = ".torn"


class StoreError(Exception):
    """A run that cannot be found, created or read; the message names the path."""


class DiskFullError(StoreError):
    """No space left to record state: the run must stop, earlier runs are intact."""


def storage_error(path: str, exc: OSError) -> StoreError:
    """The StoreError for an OSError on `path` (DiskFullError when the disk or quota is full)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(f"{path}: no space left on device; the run cannot record its state and stops "
                             "(earlier runs are untouched)")
    return StoreError(f"{path}: {exc.strerror or exc}")


def write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written (a write may take only part)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def cut_torn_tail(fd: int, path: str) -> int:
    """Move the bytes after the last newline of the open file `fd` to PATH.torn (appended, synced)
    and truncate them away; how many bytes were moved (0: the file ends with a newline)."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return 0
    end = size
    while end > 0:  # find the last newline, reading backwards in blocks
        start = max(0, end - 65536)
        found = os.pread(fd, end - start, start).rfind(b"\n")
        if found >= 0:
            end = start + found + 1
            break
        end = start
    torn = os.pread(fd, size - end, end)
    keep = os.open(path + TORN_SUFFIX, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        write_all(keep, torn + b"\n")
        os.fsync(keep)
    finally:
        os.close(keep)
    os.ftruncate(fd, end)
    os.fdatasync(fd)
    return len(torn)


class _Syncer:
    """fdatasync of one file on a thread of its own, so the writer does not wait for the disk.

    Each `request` asks for everything written so far to reach the disk; requests
    that pile up while a sync runs are served by the next single sync.  The first
    failure is kept in `error` for the writer to raise."""

    def __init__(self, fd: int) -> None:
        import threading

        self._fd = fd
        self._cond = threading.Condition()
        self._wanted = 0
        self._done = 0
        self._stopping = False
        self.error: OSError | None = None
        self._thread = threading.Thread(target=self._serve, name="journal-sync", daemon=True)
        self._thread.start()

    def request(self) -> None:
        with self._cond:
            self._wanted += 1
            self._cond.notify_all()

    def wait(self) -> None:
        """Until every requested sync has been done."""
        with self._cond:
            while self._done < self._wanted:
                self._cond.wait()

    def stop(self) -> None:
        """Do what was requested, then end the thread (before the file is closed)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join()

    def _serve(self) -> None:
        while True:
            with self._cond:
                while self._done == self._wanted and not self._stopping:
                    self._cond.wait()
                if self._done == self._wanted:
                    return
                target = self._wanted
            error = None
            try:
                os.fdatasync(self._fd)
            except OSError as exc:
                error = exc
            with self._cond:
                self.error = self.error or error
                self._done = target
                self._cond.notify_all()


class Journal:
    """The append-only event log of one run.  `add` buffers; `flush` writes and fsyncs once.

    Batching matters on SD cards, where an fsync costs milliseconds: the
    supervisor flushes once per turn of its loop, before it blocks, so a
    100-step chain costs about one fsync per step however many events a
    step produces.

    With `sync_behind` (the supervisor's journal), `flush` writes at once but leaves
    the fdatasync to a thread, so the next step starts while the disk catches up:
    a killed supervisor loses nothing (the kernel has the bytes), and power lost
    in that moment loses at most the events of the last turn, which is what power
    lost a moment earlier would have cost anyway.  A failed sync is raised by the
    next `flush`, and `close` returns only when everything is on disk.
    """

    def __init__(self, path: str, seq: int = 0, sync_behind: bool = False) -> None:
        self.path = path
        self.seq = seq
        self._sync_behind = sync_behind
        self._syncer: _Syncer | None = None
        self._pending: list[bytes] = []
        self.error: StoreError | None = None  # the first write that failed, until one succeeds
        self._held: StoreError | None = None
        self._tail_checked = False
        try:
            # read too: the torn-tail check looks at the last bytes before the first write
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise storage_error(path, exc) from None

    @property
    def pending(self) -> int:
        """Events added but not yet written."""
        return len(self._pending)

    def add(self, event: dict[str, Any]) -> dict[str, Any]:
        self.seq += 1
        event["seq"] = self.seq
        self._pending.append(json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n")
        return event

    def hold(self, error: StoreError) -> None:
        """Refuse writes with `error` (kept in memory) until `release`: someone found the disk full
        before a write did, and the run must stop at its next flush."""
        self._held = error
        self.error = self.error or error

    def release(self) -> None:
        self._held = None

    def flush(self) -> None:
        """Write the pending events with one write and one fdatasync.  On failure nothing of them
        stays in the file, they stay pending, and the error is raised (and kept in `error`)."""
        if self._held is not None:
            raise self._held
        self._raise_sync_error()
        if not self._pending:
            return
        data = b"".join(self._pending)
        start = None
        try:
            if not self._tail_checked:
                cut_torn_tail(self._fd, self.path)
                self._tail_checked = True
            start = os.fstat(self._fd).st_size
            write_all(self._fd, data)
            if not self._sync_behind:
                os.fdatasync(self._fd)  # the data and the file size; not the mtime
        except OSError as exc:
            if start is not None:
                try:
                    os.ftruncate(self._fd, start)  # a partial record must not become a torn tail
                except OSError:
                    pass
            error = storage_error(self.path, exc)
            self.error = self.error or error
            raise error from None
        self._pending.clear()
        self.error = None
        if self._sync_behind:
            if self._syncer is None:
                self._syncer = _Syncer(self._fd)
            self._syncer.request()

    def sync(self) -> None:
        """Return once everything flushed is on disk; raise a sync that failed."""
        if self._syncer is not None:
            self._syncer.wait()
        self._raise_sync_error()

    def _raise_sync_error(self) -> None:
        if self._syncer is not None and self._syncer.error is not None:
            error = storage_error(self.path, self._syncer.error)
            self._syncer.error = None
            self.error = self.error or error
            raise error

    def close(self) -> None:
        try:
            self.flush()
            self.sync()
        finally:
            if self._syncer is not None:
                self._syncer.stop()
            os.close(self._fd)


def read_events(path: str) -> tuple[list[tuple[int, dict[str, Any]]], list[str]]:
    """Every valid event of a journal with its line number, and `path:line: what is wrong` for the rest."""
    problems: list[str] = []
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        return [], []
    except OSError as exc:
        return [], [f"{path}: cannot read journal: {exc.strerror}"]
    lines = raw.split(b"\n")
    tail = lines.pop()  # after the last newline: empty, or a record cut by a crash
    if tail.strip():
        problems.append(f"{path}:{len(lines) + 1}: the last record is incomplete (its writer died while "
                        "writing it); ignored")
    events = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = check_event(json.loads(line))
        except (ValueError, RecordError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            problems.append(f"{path}:{number}: damaged record ({exc}); skipped")
            continue
        events.append((number, event))
    return events, problems


def read_journal(path: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Every valid event of a journal, and what was wrong with the rest."""
    events, problems = read_events(path)
    return [event for _line, event in events], problems
