"""A long-lived front end's view of the runs under a data dir, read once and re-read only what changed.

Why: the DAGs list shows each DAG's last 20 runs, and /metrics counts every run by status.
With 100 DAGs and 10,000 runs, reading every run's snapshot and journal per request costs
about a second; the API's list must answer in milliseconds.  What makes caching safe here:

- a run folder appears or disappears only in its DAG's folder, which changes that folder's
  mtime (a folder changed within the last CHANGE_WINDOW_SEC is listed again every time,
  since two changes within one mtime tick look like one);
- everything that changes a run appends to its journal (the snapshot only caches the
  journal), so a run whose journal has the same size, mtime and inode reads the same; and
  `started_at` is set once (a retry keeps it), so the order of finished runs never changes;
- a run that is not finished (queued, running, waiting) may change without its journal
  changing (its supervisor dies), so it is read again every time.

A stat costs ~6 us on a small VM, so even one per listed run (2,000 for 100 DAGs x 20) is
12 ms.  So `recent` stats the DAG folder and the journals of its ALWAYS_CHECKED newest runs on
every call, and the journals of the others it returns at most every SWEEP_SEC: a finished run
only changes when someone retries it, and a retried old run shows within SWEEP_SEC (the live
pages' own promise is 1 s).  `runs` (every run, for counts) stats every journal.  Either way:
one `stat` per run instead of two reads and a parse.  Nothing here writes.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import field
from typing import Callable

from dagu.spec.records import dataclass
from dagu.store.runs import RunView, Store
from dagu.store.state import RUN_FINAL

CHANGE_WINDOW_SEC = 2.0
ALWAYS_CHECKED = 3  # per DAG, the newest runs whose journals every `recent` call stats
SWEEP_SEC = 1.0  # how often the journals of the other listed finished runs are stat'ed


@dataclass(frozen=True, slots=True)
class RunRow:
    """What lists and counters need of one run (not its steps, logs or outputs): 10,000 of
    them are kept, so as little as that."""

    run_id: str
    status: str
    started_at: float | None
    finished_at: float | None
    step_seconds: tuple[float, ...] = ()  # wall time of each finished step attempt

    @property
    def final(self) -> bool:
        return self.status in RUN_FINAL

    def sort_key(self) -> tuple[float, str]:
        return (self.started_at or 0, self.run_id)

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "status": self.status, "started_at": self.started_at,
                "finished_at": self.finished_at}


def row_of(view: RunView) -> RunRow:
    st = view.status
    seconds = tuple(a.finished_at - a.started_at for s in st.steps.values() for a in s.attempts
                    if a.finished_at is not None and a.started_at is not None)
    return RunRow(st.run_id, sys.intern(st.status), st.started_at, st.finished_at, seconds)


def _sig(path: str) -> int | None:
    """The file's size, mtime and inode, as one hash (8 bytes a run, not a tuple of three)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return hash((st.st_mtime_ns, st.st_size, st.st_ino))


def _folder_sig(path: str) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


@dataclass
class _DagRuns:
    folder: str
    folder_sig: tuple | None = None
    listed_at: float = 0.0
    rows: dict[str, tuple[int | None, RunRow]] = field(default_factory=dict)  # id -> (journal sig, row)
    unfinished: set[str] = field(default_factory=set)  # ids of rows not final: read every time
    swept_at: float = 0.0  # when every listed row's journal was last stat'ed
    order: list[RunRow] = field(default_factory=list)  # newest first


class RunIndex:
    """Run rows per DAG for one data dir, for one process; safe to share between request threads."""

    def __init__(self, home: str, clock: Callable[[], float] = time.time) -> None:
        self.store = Store(home)
        self._dags: dict[str, _DagRuns] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def recent(self, dag: str, limit: int) -> list[RunRow]:
        """The DAG's `limit` newest runs, newest first (as `Store.views(dag)[:limit]` reads them)."""
        return self._refresh(dag, limit)

    def runs(self, dag: str) -> list[RunRow]:
        """Every run of the DAG, newest first, each checked against its journal."""
        return self._refresh(dag, None)

    def dag_names(self) -> list[str]:
        return self.store.dag_names()

    def _refresh(self, dag: str, limit: int | None) -> list[RunRow]:
        cached = self._dags.get(dag)
        if cached is None:
            folder = self.store.dag_dir(dag)  # checks the name (BadName) before any path is used
        with self._lock:
            if cached is None:
                cached = self._dags[dag] = _DagRuns(folder=folder)
            folder = cached.folder
            sig = _folder_sig(folder)
            if sig is None:
                del self._dags[dag]
                return []
            changed = False
            if sig != cached.folder_sig or cached.listed_at - sig[0] / 1e9 < CHANGE_WINDOW_SEC:
                if self._relist(dag, cached):
                    self._sort(cached)
                cached.folder_sig, cached.listed_at = sig, self._clock()
            now = self._clock()
            depth = limit
            if limit is not None and now - cached.swept_at < SWEEP_SEC:
                depth = min(limit, ALWAYS_CHECKED)
            elif limit is not None:
                cached.swept_at = now
            check = {row.run_id for row in (cached.order if depth is None else cached.order[:depth])}
            for run_id in check | cached.unfinished:
                old_sig, row = cached.rows[run_id]
                if run_id in cached.unfinished or _sig(os.path.join(folder, run_id, "journal.jsonl")) != old_sig:
                    changed = self._update(dag, cached, run_id) or changed
            if changed:
                self._sort(cached)
            return cached.order[:limit] if limit is not None else list(cached.order)

    @staticmethod
    def _sort(cached: _DagRuns) -> None:
        cached.order = sorted((r for _s, r in cached.rows.values()), key=RunRow.sort_key, reverse=True)

    def _relist(self, dag: str, cached: _DagRuns) -> bool:
        ids = set(self.store.run_ids(dag))
        gone = [r for r in cached.rows if r not in ids]
        for run_id in gone:
            del cached.rows[run_id]
            cached.unfinished.discard(run_id)
        for run_id in ids - cached.rows.keys():
            self._update(dag, cached, run_id)
        return bool(gone) or len(ids) != len(cached.order)

    def _update(self, dag: str, cached: _DagRuns, run_id: str) -> bool:
        """Read one run again; whether its row changed."""
        run = self.store.run(dag, run_id)
        sig = _sig(run.journal)  # before reading: a write in between is seen next time
        row = row_of(run.read())
        old = cached.rows.get(run_id)
        cached.rows[run_id] = (sig, row)
        if row.final:
            cached.unfinished.discard(run_id)
        else:
            cached.unfinished.add(run_id)
        return old is None or old[1] != row
