"""Runs on disk: the layout, the journal, the status snapshot, and the locks.

The layout and every record are documented in spec/state-format.md.  Two rules
keep runs safe on machines that crash or fill their disks:

- history is append-only: the journal of a run only grows, one fsync'd JSON
  line per batch of state changes, and nothing ever rewrites another run;
- the snapshot (`status.json`) is a cache of the journal, replaced atomically
  (temp file, fsync, rename); a reader folds in journal events newer than the
  snapshot, so a stale or damaged snapshot loses nothing.

A live supervisor holds an flock on its run's `lock` file.  The kernel drops it
when the process dies however it dies, so "status says running but nobody
holds the lock" is exactly "the supervisor died", with no pid-reuse guessing.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from dagu.settings import dagu_home
from dagu.store.state import QUEUED, RUN_FINAL, WAITING, RunStatus, apply

TOMBSTONE = ".deleting-"  # prefix of a run directory being deleted (see Store.bury)
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
STATE_FORMAT = 1


class StoreError(Exception):
    """A run that cannot be found, created or read; the message names the path."""


class DiskFullError(StoreError):
    """No space left to record state: the run must stop, earlier runs are intact."""


def _storage_error(path: str, exc: OSError) -> StoreError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(f"{path}: no space left on device; the run cannot record its state and stops "
                             "(earlier runs are untouched; free space and use `dagu retry`)")
    return StoreError(f"{path}: {exc.strerror or exc}")


def write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written (a write may take only part)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def append_synced(path: str, data: bytes) -> None:
    """Append to a history file and fdatasync it: for the scheduler's and retention's logs.
    Raises OSError; callers say which file it was."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        write_all(fd, data)
        os.fdatasync(fd)
    finally:
        os.close(fd)


def rotate_if_large(path: str, max_bytes: int) -> bool:
    """Move a grown append-only log to PATH.1 (replacing the previous one), so logs the data dir
    keeps for people (the scheduler's tick records, its launch log) take at most twice max_bytes.
    A writer that still has the old file open finishes its line there."""
    try:
        if os.stat(path).st_size <= max_bytes:
            return False
        os.replace(path, path + ".1")
    except FileNotFoundError:
        return False
    return True


def write_atomic(path: str, text: str, make_dirs: bool = False) -> None:
    """Write temp, fsync, rename, fsync the directory: all or nothing, even on power loss.

    The one atomic write of dagu (plans, snapshots, queue entries, scheduler state);
    `make_dirs` creates the directory first (`dagu compile -o DIR`)."""
    directory = os.path.dirname(path) or "."
    if make_dirs:
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise _storage_error(directory, exc) from None
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            write_all(fd, text.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise _storage_error(path, exc) from None


def remove_tree(path: str) -> None:
    """rmtree that tolerates another process deleting the same tree at the same time."""
    def gone_already(_func: Any, _path: str, exc_info: Any) -> None:
        if not isinstance(exc_info[1], FileNotFoundError):
            raise exc_info[1]

    shutil.rmtree(path, onerror=gone_already)


class Journal:
    """The append-only event log of one run.  `add` buffers; `flush` writes and fsyncs once.

    Batching matters on SD cards, where an fsync costs milliseconds: the
    supervisor flushes once per turn of its loop, before it blocks, so a
    100-step chain costs about one fsync per step however many events a
    step produces.
    """

    def __init__(self, path: str, seq: int = 0) -> None:
        self.path = path
        self.seq = seq
        self._pending: list[bytes] = []
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise _storage_error(path, exc) from None

    def add(self, event: dict[str, Any]) -> dict[str, Any]:
        self.seq += 1
        event["seq"] = self.seq
        self._pending.append(json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n")
        return event

    def flush(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            os.fdatasync(self._fd)  # the data and the file size; not the mtime
        except OSError as exc:
            raise _storage_error(self.path, exc) from None

    def close(self) -> None:
        try:
            self.flush()
        finally:
            os.close(self._fd)


@dataclass
class RunView:
    """A run as read from disk, with what was wrong with its files (paths included)."""

    path: str
    status: RunStatus
    problems: list[str] = field(default_factory=list)
    live: bool = False  # a supervisor holds the run's lock right now
    # The supervisor died and nobody has recorded it yet: `status` shows the run interrupted
    # (in memory only); `RunDir.record_interruption` writes it, by whoever owns liveness.
    dead: bool = False


def _try_lock(path: str, create: bool = True) -> int | None:
    """An fd holding an exclusive flock on `path`, or None if someone else holds it.

    Without `create`, a missing file counts as a free lock and nothing is created (readers)."""
    try:
        fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
    except FileNotFoundError:
        if create:
            raise
        return -1
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    return fd


class RunDir:
    """One run's directory: plan.json, journal.jsonl, status.json, lock, logs/."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.plan = os.path.join(path, "plan.json")
        self.journal = os.path.join(path, "journal.jsonl")
        self.status = os.path.join(path, "status.json")
        self.lock = os.path.join(path, "lock")
        self.logs = os.path.join(path, "logs")
        self._lock_fd: int | None = None

    @property
    def run_id(self) -> str:
        return os.path.basename(self.path)

    # -- the owner's side ----------------------------------------------------

    def acquire(self) -> bool:
        """Take the run's lock for this process's lifetime; False if a live supervisor has it."""
        fd = _try_lock(self.lock)
        if fd is None:
            return False
        self._lock_fd = fd
        return True

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def write_snapshot(self, status: RunStatus) -> None:
        # One line, no indent: `indent` makes json use its slow pure-Python encoder.
        # `python -m json.tool status.json` or `jq . status.json` pretty-prints it.
        write_atomic(self.status, json.dumps({"format": STATE_FORMAT, **status.to_dict()},
                                              ensure_ascii=False, separators=(",", ":")) + "\n")

    def step_log(self, step_id: str, attempt: int, stream: str, handler: bool = False) -> str:
        prefix = "handler." if handler else ""
        return os.path.join(self.logs, f"{prefix}{step_id}.{attempt}.{stream}")

    # -- the reader's side ---------------------------------------------------

    def read(self) -> RunView:
        """The run as its files say, folding the journal over the snapshot.  Never writes.

        A run whose supervisor is dead (status running, lock free) is *reported*
        interrupted (`view.dead`, `status.interrupted`), in memory only: recording it
        is the job of whoever owns the run's liveness (`record_interruption`).
        """
        return self._read(check_liveness=True)

    def _read(self, check_liveness: bool) -> RunView:
        problems: list[str] = []
        status: RunStatus | None = None
        try:
            with open(self.status, encoding="utf-8") as fh:
                data = json.load(fh)
            data.pop("format", None)
            status = RunStatus.from_dict(data)
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError, KeyError) as exc:
            problems.append(f"{self.status}: damaged status snapshot ({exc}); rebuilt from the journal")
        events, journal_problems = read_journal(self.journal)
        problems += journal_problems
        if status is None:
            status = RunStatus(dag=os.path.basename(os.path.dirname(self.path)), run_id=self.run_id, status="unknown")
            if not events:
                if not os.path.exists(self.journal):
                    problems.append(f"{self.journal}: missing; nothing is known about this run")
        for event in events:
            if event.get("seq", 0) > status.seq:
                try:
                    apply(status, event)
                except (KeyError, TypeError, ValueError) as exc:
                    problems.append(f"{self.journal}: record seq {event.get('seq')} is malformed ({exc}); skipped")
        view = RunView(self.path, status, problems)
        if status.status in RUN_FINAL or status.status in (QUEUED, WAITING) or not check_liveness:
            return view  # no supervisor expected, or the caller holds the lock
        if self._lock_fd is not None:  # this process is the supervisor
            view.live = True
            return view
        fd = _try_lock(self.lock, create=False) if os.path.exists(self.path) else None
        if fd is None:
            view.live = True
            return view
        if fd >= 0:
            os.close(fd)
        view.dead = True  # nobody holds the lock: the supervisor is gone
        apply(status, _interrupted_event())
        return view

    def record_interruption(self) -> RunView:
        """Write down that the run's supervisor died (an `interrupted` event and a fresh snapshot),
        if it did; the run as it is then.  For the owners of liveness only (the next supervisor
        of the run, the scheduler, `dagu retry`): it takes the run's lock while it writes, so a
        run whose supervisor is alive is never touched."""
        fd = _try_lock(self.lock) if self._lock_fd is None else None
        if self._lock_fd is None and fd is None:
            return self.read()  # a live supervisor
        try:
            view = self._read(check_liveness=False)
            if view.status.status in RUN_FINAL or view.status.status in (QUEUED, WAITING):
                return view
            event = _interrupted_event()
            journal = Journal(self.journal, view.status.seq)
            journal.add(event)
            journal.close()
            apply(view.status, event)
            self.write_snapshot(view.status)
            return view
        finally:
            if fd is not None:
                os.close(fd)


def _interrupted_event() -> dict[str, Any]:
    return {"ev": "interrupted", "at": time.time(),
            "reason": "the supervisor stopped before the run finished (killed, crashed or the host rebooted)"}


def read_journal(path: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Every readable event of a journal, and what was wrong with the rest."""
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
        problems.append(f"{path}: the last record is incomplete (the supervisor died while writing it); ignored")
    events = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
            if not isinstance(event, dict) or "ev" not in event:
                raise ValueError("not an event")
        except ValueError as exc:
            problems.append(f"{path}:{number}: damaged record ({exc}); skipped")
            continue
        events.append(event)
    return events, problems


class Store:
    """All runs under one data dir: $DAGU_HOME/runs/<dag>/<run_id>/."""

    def __init__(self, home: str | None = None) -> None:
        self.home = home or dagu_home()
        self.runs = os.path.join(self.home, "runs")

    def dag_dir(self, dag: str) -> str:
        return os.path.join(self.runs, dag)

    def run(self, dag: str, run_id: str) -> RunDir:
        return RunDir(os.path.join(self.runs, dag, run_id))

    def create(self, dag: str, run_id: str, plan_text: str) -> RunDir:
        if not RUN_ID_RE.match(run_id):
            raise StoreError(f"run id {run_id!r} is not allowed: use up to 128 letters, digits, '_', '.', ':' or '-'")
        run = self.run(dag, run_id)
        try:
            os.makedirs(os.path.dirname(run.path), exist_ok=True)
            os.mkdir(run.path)
        except FileExistsError:
            raise StoreError(f"run id {run_id!r} of DAG {dag!r} already exists ({run.path}); "
                             "use `dagu retry --run-id` to continue it, or pick another id") from None
        except OSError as exc:
            raise _storage_error(run.path, exc) from None
        try:
            os.mkdir(run.logs)
        except OSError as exc:
            raise _storage_error(run.logs, exc) from None
        write_atomic(run.plan, plan_text)
        return run

    def run_ids(self, dag: str) -> list[str]:
        try:
            names = os.listdir(self.dag_dir(dag))
        except FileNotFoundError:
            return []
        return [n for n in names if not n.startswith(".") and os.path.isdir(os.path.join(self.dag_dir(dag), n))]

    def views(self, dag: str) -> list[RunView]:
        """Every run of a DAG, newest first; a damaged run is still listed, with its problems."""
        views = [self.run(dag, rid).read() for rid in self.run_ids(dag)]
        views.sort(key=lambda v: (v.status.started_at or 0, v.status.run_id), reverse=True)
        return views

    def latest(self, dag: str) -> RunView | None:
        views = self.views(dag)
        return views[0] if views else None

    def dag_names(self) -> list[str]:
        """Every DAG that has a runs folder (a tombstone or dot-folder is not a DAG)."""
        try:
            names = os.listdir(self.runs)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if not n.startswith(".") and os.path.isdir(os.path.join(self.runs, n)))

    # -- deletion ---------------------------------------------------------------
    # A run is deleted in two steps: an atomic rename to a tombstone (`.deleting-<run_id>`,
    # beside it), then rmtree.  Listers skip dot-names, so a crash halfway through rmtree
    # leaves no half-run in `dagu history`; `finish_tombstones` completes the job later.

    def bury(self, run: RunDir) -> str | None:
        """Rename a run's directory to its tombstone; the tombstone's path, or None if the run is gone."""
        tomb = os.path.join(os.path.dirname(run.path), TOMBSTONE + run.run_id)
        for _ in range(2):
            try:
                os.rename(run.path, tomb)
                return tomb
            except FileNotFoundError:
                return None  # someone else deleted it first
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise _storage_error(run.path, exc) from None
                remove_tree(tomb)  # a tombstone of an earlier run with this id, left by a crash
        raise StoreError(f"{tomb}: cannot replace the leftover tombstone; remove it by hand")

    def remove(self, run: RunDir) -> None:
        """Delete a run's directory, crash-safely (see `bury`)."""
        tomb = self.bury(run)
        if tomb is not None:
            remove_tree(tomb)

    def tombstones(self, dag: str | None = None) -> list[str]:
        """Tombstones left by deletions that did not finish (of one DAG, or of all)."""
        found = []
        for name in [dag] if dag is not None else self.dag_names():
            try:
                entries = os.listdir(self.dag_dir(name))
            except OSError:
                continue
            found += [os.path.join(self.dag_dir(name), e) for e in entries if e.startswith(TOMBSTONE)]
        return found

    def finish_tombstones(self, dag: str | None = None) -> int:
        """Complete deletions a crash interrupted; how many tombstones were removed."""
        tombs = self.tombstones(dag)
        for tomb in tombs:
            remove_tree(tomb)
        return len(tombs)

    # -- max_active_runs -------------------------------------------------------

    def take_slot(self, dag: str, limit: int, run: RunDir) -> "Slot | None":
        """One of the DAG's `limit` run slots, or None when all are held by live runs."""
        slots = os.path.join(self.dag_dir(dag), ".slots")
        os.makedirs(slots, exist_ok=True)
        for n in range(max(1, limit)):
            path = os.path.join(slots, f"{n}.lock")
            fd = _try_lock(path)
            if fd is not None:
                os.ftruncate(fd, 0)
                os.pwrite(fd, (run.path + "\n").encode(), 0)
                return Slot(fd)
        return None

    def slot_holders(self, dag: str) -> Iterator[RunDir]:
        """The run last written into each of the DAG's slots, live or not: a free slot's last
        holder may be a run whose supervisor died with its steps still running."""
        slots = os.path.join(self.dag_dir(dag), ".slots")
        try:
            names = sorted(os.listdir(slots))
        except FileNotFoundError:
            return
        for name in names:
            try:
                with open(os.path.join(slots, name), encoding="utf-8") as fh:
                    run_path = fh.read().strip()
            except OSError:
                continue
            if run_path:
                yield RunDir(run_path)

    def active_runs(self, dag: str) -> Iterator[RunDir]:
        """Runs of a DAG whose supervisors are alive (they hold a slot)."""
        slots = os.path.join(self.dag_dir(dag), ".slots")
        try:
            names = sorted(os.listdir(slots))
        except FileNotFoundError:
            return
        for name in names:
            path = os.path.join(slots, name)
            fd = _try_lock(path)
            if fd is not None:  # free slot
                os.close(fd)
                continue
            try:
                with open(path, encoding="utf-8") as fh:
                    run_path = fh.read().strip()
            except OSError:
                continue
            if run_path:
                yield RunDir(run_path)


@dataclass
class Slot:
    fd: int

    def release(self) -> None:
        os.close(self.fd)


def hostname() -> str:
    return socket.gethostname()
