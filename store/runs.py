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
import time
from dataclasses import field
from collections.abc import Callable, Iterator

from dagu.spec.records import dataclass
from dagu.settings import dagu_home
from dagu.spec.names import BadName, check_dag_name, check_run_id, dag_name_problem, run_id_problem
from dagu.store.journal import (DiskFullError, Journal, StoreError, read_events, read_journal, storage_error,
                                write_all)
from dagu.store.records import RecordError, status_from_record
from dagu.store.state import QUEUED, RUN_FINAL, WAITING, RunStatus, apply

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any

TOMBSTONE = ".deleting-"  # prefix of a run directory being deleted (see Store.bury)
STATE_FORMAT = 1
DAMAGED_SUFFIX = ".damaged"  # a snapshot that did not read back, kept beside its replacement


_storage_error = storage_error  # the name other modules import (schedule/state.py)


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


def write_atomic(path: str, text: str, make_dirs: bool = False, mode: int = 0o644, sync: bool = True,
                 sync_dir: bool = True) -> None:
    """Write temp, fsync, rename, fsync the directory: all or nothing, even on power loss.

    The one atomic write of dagu (plans, snapshots, queue entries, scheduler state, the users
    file); `make_dirs` creates the directory first (`dagu compile -o DIR`); `mode` is the file's
    mode from its creation (0600 for credentials: never readable by others, not even briefly).

    Each fsync costs ~0.2-1 ms on a disk and more on an SD card, so a file that is only a cache
    of something durable skips what it does not need: without `sync_dir` a power loss may
    undo the rename (the reader then sees the previous file: a run's snapshot, which its
    journal completes); without `sync` as well the new file may come back empty or torn after
    a power loss, so only a cache its reader checks may skip it (the plan cache)."""
    directory = os.path.dirname(path) or "."
    if make_dirs:
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise _storage_error(directory, exc) from None
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            if mode != 0o644:
                os.fchmod(fd, mode)  # a temp file left by a crash keeps its old bits otherwise
            write_all(fd, text.encode("utf-8"))
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        if sync and sync_dir:
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

    import shutil  # here only: deleting is rare
    shutil.rmtree(path, onerror=gone_already)


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
        self._snapshot_checked = False  # whether write_snapshot looked for a damaged snapshot yet

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
        """Replace the snapshot atomically; a damaged one is first kept beside it (`keep_damaged`)."""
        if not self._snapshot_checked:
            self.keep_damaged()
            self._snapshot_checked = True
        # One line, no indent: `indent` makes json use its slow pure-Python encoder.
        # `python -m json.tool status.json` or `jq . status.json` pretty-prints it.
        # Whole before it is renamed (fsync), but the rename itself need not survive a power
        # loss: the journal, fsync'd as it grows, has every event, and a reader folds it over
        # whichever snapshot it finds (or none).
        write_atomic(self.status, json.dumps({"format": STATE_FORMAT, **status.to_dict()},
                                              ensure_ascii=False, separators=(",", ":")) + "\n", sync_dir=False)

    def keep_damaged(self) -> str | None:
        """Move a snapshot that does not read back to `status.json.damaged` (`.damaged.1`, ... when
        that exists), so the evidence survives the next write; the new path, or None."""
        if not os.path.exists(self.status) or self._load_snapshot()[1] is None:
            return None
        for n in range(10):
            target = self.status + DAMAGED_SUFFIX + (f".{n}" if n else "")
            if not os.path.lexists(target):
                break
        try:
            os.replace(self.status, target)
        except OSError as exc:
            raise storage_error(self.status, exc) from None
        return target

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

    def _load_snapshot(self) -> tuple[RunStatus | None, str | None]:
        """The snapshot as a checked RunStatus, or None and what is wrong with it (None: missing)."""
        try:
            with open(self.status, "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            return None, f"{self.status}: cannot read the status snapshot ({exc.strerror}); rebuilt from the journal"
        try:
            data = json.loads(raw)
            if isinstance(data, dict):
                version = data.pop("format", STATE_FORMAT)
                if version != STATE_FORMAT:
                    raise RecordError(f"field 'format': this dagu reads format {STATE_FORMAT}, got {version!r}")
            return status_from_record(data), None
        except json.JSONDecodeError as exc:
            return None, f"{self.status}:{exc.lineno}: damaged status snapshot ({exc.msg}); rebuilt from the journal"
        except (ValueError, RecordError) as exc:  # RecordError: a field of the wrong type
            return None, f"{self.status}:1: damaged status snapshot ({exc}); rebuilt from the journal"

    def _read(self, check_liveness: bool) -> RunView:
        problems: list[str] = []
        status, problem = self._load_snapshot()
        if problem:
            problems.append(problem)
        folder = (os.path.basename(os.path.dirname(self.path)), self.run_id)
        if status is not None and (status.dag, status.run_id) != folder:
            problems.append(f"{self.status}:1: the snapshot names run {status.dag}/{status.run_id}, not its folder "
                            f"{folder[0]}/{folder[1]}; rebuilt from the journal")
            status = None
        events, journal_problems = read_events(self.journal)
        problems += journal_problems
        if status is None:
            status = RunStatus(dag=folder[0], run_id=folder[1], status="unknown")
            if not events:
                if not os.path.exists(self.journal):
                    problems.append(f"{self.journal}: missing; nothing is known about this run")
        for line, event in events:
            if event["seq"] > status.seq:
                try:
                    apply(status, event)
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    problems.append(f"{self.journal}:{line}: damaged record ({type(exc).__name__}: {exc}); "
                                    "skipped")
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


class Store:
    """All runs under one data dir: $DAGU_HOME/runs/<dag>/<run_id>/."""

    def __init__(self, home: str | None = None) -> None:
        self.home = home or dagu_home()
        self.runs = os.path.join(self.home, "runs")

    # Every path of a DAG or a run is built here, through the name checks of spec/names.py
    # (BadName names the value and the rule), and what exists there must resolve inside
    # runs/: a symlinked folder pointing elsewhere is refused before anything is read or written.

    def dag_dir(self, dag: str) -> str:
        return self._contained(os.path.join(self.runs, check_dag_name(dag)))

    def run(self, dag: str, run_id: str) -> RunDir:
        return RunDir(self._contained(os.path.join(self.dag_dir(dag), check_run_id(run_id))))

    def _contained(self, path: str) -> str:
        """`path` (one checked name below runs/ or a DAG folder), refused if it is a symlink that
        resolves outside runs/.  Names hold no separator and no '..', so a symlink at the last
        component is the only way out: one lstat, not a realpath of every component."""
        if os.path.islink(path):
            root = os.path.realpath(self.runs)
            real = os.path.realpath(path)
            if not real.startswith(root + os.sep):
                raise BadName(f"{path} resolves to {real}, outside {root} (a symbolic link?): refused")
        return path

    def exists(self, dag: object, run_id: object) -> bool:
        """Whether a run folder with these names exists (False for names that are not allowed, or
        a folder that resolves outside: for names read from records, which may be damaged)."""
        try:
            return os.path.isdir(self.run(dag, run_id).path)  # type: ignore[arg-type]
        except BadName:
            return False

    def create(self, dag: str, run_id: str, plan_text: str) -> RunDir:
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
            try:
                os.mkdir(run.logs)
            except OSError as exc:
                raise _storage_error(run.logs, exc) from None
            write_atomic(run.plan, plan_text)
        except StoreError as exc:
            # Nothing ran and a run without its plan can never be retried: leave no half-made run.
            remove_tree(run.path)
            raise type(exc)(f"{exc}; no run was created (free space and start it again)") from None
        return run

    def run_ids(self, dag: str) -> list[str]:
        """The DAG's run folders: real directories (not symlinks) with an allowed run id."""
        return _folders(self.dag_dir(dag), run_id_problem)

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
        return sorted(_folders(self.runs, dag_name_problem))

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

    def _slot_files(self, dag: str) -> list[str]:
        """The paths of the DAG's slot files (one per allowed active run), in order."""
        slots = os.path.join(self.dag_dir(dag), ".slots")
        try:
            return [os.path.join(slots, name) for name in sorted(os.listdir(slots))]
        except FileNotFoundError:
            return []

    def slot_holders(self, dag: str) -> Iterator[RunDir]:
        """The run last written into each of the DAG's slots, live or not: a free slot's last
        holder may be a run whose supervisor died with its steps still running."""
        for path in self._slot_files(dag):
            run = self._slot_run(dag, path)
            if run is not None:
                yield run

    def _slot_run(self, dag: str, slot: str) -> RunDir | None:
        """The run a slot file names, when it is a run of this DAG inside the data dir (a slot
        file is state on disk like any other: a damaged or planted one leads nowhere)."""
        try:
            with open(slot, encoding="utf-8") as fh:
                run_path = fh.read().strip()
        except OSError:
            return None
        if run_path and os.path.dirname(run_path) == self.dag_dir(dag) \
                and run_id_problem(os.path.basename(run_path)) is None:
            return self.run(dag, os.path.basename(run_path))
        return None

    def active_runs(self, dag: str) -> Iterator[RunDir]:
        """Runs of a DAG whose supervisors are alive (they hold a slot)."""
        for path in self._slot_files(dag):
            fd = _try_lock(path)
            if fd is not None:  # free slot
                os.close(fd)
                continue
            run = self._slot_run(dag, path)
            if run is not None:
                yield run


def _folders(parent: str, problem: Callable[[str], str | None]) -> list[str]:
    """Names of the real directories in `parent` whose name passes `problem` (dot-names never do)."""
    try:
        entries = list(os.scandir(parent))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [e.name for e in entries if e.is_dir(follow_symlinks=False) and problem(e.name) is None]


@dataclass
class Slot:
    fd: int

    def release(self, finished: bool = False) -> None:
        """Free the slot.  `finished`: its run ended under its supervisor, which leaves no process
        behind, so the slot file is emptied and the next start of the DAG need not read that run
        to look for leftovers (`slot_holders`, ~1 ms of every start)."""
        if finished:
            try:
                os.ftruncate(self.fd, 0)
            except OSError:
                pass  # the run is read next time, as after a crash
        os.close(self.fd)


ENV_HOST_NAME = "DAGU_HOST_NAME"


def hostname() -> str:
    """The name this host goes by in the (possibly shared) data dir: DAGU_HOST_NAME, else the
    hostname.  Runs record it; a stop of a run recorded on another name goes through a stop
    request (distributed/stops.py) instead of a pid, which means nothing there."""
    return os.environ.get(ENV_HOST_NAME) or os.uname().nodename  # socket.gethostname(), without socket
