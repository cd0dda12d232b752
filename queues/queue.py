"""Queued runs: `dagu enqueue` records a run to start later; a dispatcher starts them in order.

A queued run is an ordinary run from the moment it is enqueued: its directory,
plan and journal exist (status `queued`), so `dagu status` and `dagu history`
show it and nothing is lost if the machine reboots before it starts.  The
queue itself is one small file per waiting run under `$DAGU_HOME/queue/<queue>/`,
named so that a directory listing is the order (enqueue time, then run id).
Taking an entry is a rename under an flock, so two dispatchers never start the
same run.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from typing import Callable, Sequence

from dagu.spec.records import dataclass
from dagu.launch.base import START_QUEUED, LaunchedRun, Launcher, RunRequest
from dagu.store.state import ABORTED, QUEUED, RunStatus
from dagu.store.runs import Journal, RunDir, Store, StoreError, write_atomic
from dagu.spec.names import check_dag_name, check_queue_name, check_run_id, queue_name_problem
from dagu.spec.plan import Plan, PlanError, dump_plan, load_plan


@dataclass(frozen=True)
class QueueItem:
    queue: str
    dag: str
    run_id: str
    entry: str  # the queue file
    enqueued_at: float


class Queues:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.root = os.path.join(store.home, "queue")

    def _dir(self, queue: str) -> str:
        return os.path.join(self.root, check_queue_name(queue))

    def enqueue(self, plan: Plan, dag_name: str | None, words: Sequence[str], run_id: str,
                plan_text: str | None = None) -> QueueItem:
        dag = plan.dags[dag_name or plan.root]
        queue = check_queue_name(dag.queue or dag.name)  # before anything is written
        run = self.store.create(dag.name, run_id, plan_text if plan_text is not None else dump_plan(plan))
        now = time.time()
        status = RunStatus(dag=dag.name, run_id=run_id, status=QUEUED)
        journal = Journal(run.journal)
        event = journal.add({"ev": "queued", "at": now, "queue": queue, "params": list(words)})
        journal.close()
        from dagu.store.state import apply

        apply(status, event)
        run.write_snapshot(status)
        os.makedirs(self._dir(queue), exist_ok=True)
        entry = os.path.join(self._dir(queue), f"{now:017.6f}-{dag.name}-{run_id}.json")
        write_atomic(entry, json.dumps({"dag": dag.name, "run_id": run_id, "enqueued_at": now}) + "\n")
        return QueueItem(queue, dag.name, run_id, entry, now)

    def items(self, queue: str | None = None) -> list[QueueItem]:
        if queue:
            queues = [queue]
        else:
            try:
                queues = sorted(e.name for e in os.scandir(self.root)
                                if e.is_dir(follow_symlinks=False) and queue_name_problem(e.name) is None)
            except FileNotFoundError:
                queues = []
        out = []
        for q in queues:
            try:
                names = sorted(n for n in os.listdir(self._dir(q)) if n.endswith(".json"))
            except FileNotFoundError:
                continue
            for name in names:
                path = os.path.join(self._dir(q), name)
                try:
                    with open(path, encoding="utf-8") as fh:
                        data = json.load(fh)
                    out.append(QueueItem(q, check_dag_name(data["dag"]), check_run_id(data["run_id"]), path,
                                         float(data["enqueued_at"])))
                except (OSError, ValueError, KeyError, TypeError):  # BadName is a ValueError
                    continue  # half-written, taken meanwhile, or not ours to start
        return out

    def _locked(self) -> int:
        os.makedirs(self.root, exist_ok=True)
        fd = os.open(os.path.join(self.root, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    def take(self, item: QueueItem) -> bool:
        """Remove the entry if it is still there; True if this caller got it."""
        fd = self._locked()
        try:
            os.unlink(item.entry)
            return True
        except FileNotFoundError:
            return False
        finally:
            os.close(fd)

    def dequeue(self, dag: str, run_id: str) -> bool:
        """Take a waiting run out of its queue; the run is recorded as aborted, not deleted."""
        for item in self.items():
            if item.dag == dag and item.run_id == run_id and self.take(item):
                run = self.store.run(dag, run_id)
                view = run.read()
                journal = Journal(run.journal, view.status.seq)
                journal.add({"ev": "run_finished", "at": time.time(), "status": ABORTED,
                             "error": "removed from the queue (dagu dequeue) before it started"})
                journal.close()
                run.write_snapshot(run.read().status)
                return True
        return False


def queued_words(run: RunDir) -> list[str]:
    """The params a queued run was enqueued with."""
    from dagu.store.runs import read_journal

    events, _problems = read_journal(run.journal)
    for event in events:
        if event.get("ev") == "queued":
            return list(event.get("params", []))
    return []


class Dispatcher:
    """Starts queued runs in order, each in its own supervisor process (a START_QUEUED request to
    the launcher), within each DAG's max_active_runs.  It remembers the runs it started until they end, because a run
    just started may not hold its max_active_runs slot yet: one pass must not see the slot
    free and start another."""

    def __init__(self, store: Store, launcher: Launcher) -> None:
        self.store = store
        self.launcher = launcher
        self.queues = Queues(store)
        self.children: dict[str, tuple[LaunchedRun, str]] = {}  # run path -> (process, dag)
        self.limits: dict[str, int] = {}

    def busy(self) -> bool:
        self._reap()
        return bool(self.children)

    def _reap(self) -> None:
        for key, (proc, _dag) in list(self.children.items()):
            if proc.poll() is not None:
                del self.children[key]

    def _limit(self, item: QueueItem) -> int:
        limit = self.limits.get(item.dag)
        if limit is None:
            try:
                limit = load_plan(self.store.run(item.dag, item.run_id).plan).dags[item.dag].max_active_runs
            except (PlanError, KeyError):
                limit = 1
            self.limits[item.dag] = limit
        return max(1, limit)

    def step(self) -> int:
        """One pass: start what may start now, never wait.  Returns how many started."""
        self._reap()
        started = 0
        blocked: set[str] = set()  # a queue whose head cannot start waits (order is kept)
        for item in self.queues.items():
            if item.queue in blocked:
                continue
            mine = sum(1 for _p, dag in self.children.values() if dag == item.dag)
            active = max(mine, sum(1 for _ in self.store.active_runs(item.dag)))
            if active >= self._limit(item):
                blocked.add(item.queue)
                continue
            if not self.queues.take(item):
                continue
            proc = self.launcher.launch(RunRequest(START_QUEUED, item.dag, item.run_id))
            self.children[self.store.run(item.dag, item.run_id).path] = (proc, item.dag)
            started += 1
        return started


def dispatch(store: Store, launcher: Launcher, once: bool = False,
             poll_sec: float = 1.0, stop: Callable[[], bool] | None = None) -> int:
    """Run a Dispatcher: until stopped, or with `once` until the queues are empty and the runs
    it started have ended.  Returns how many runs were started."""
    dispatcher = Dispatcher(store, launcher)
    started = 0
    while True:
        started += dispatcher.step()
        if once and not dispatcher.busy() and not dispatcher.queues.items():
            return started
        if stop is not None and stop():
            return started
        time.sleep(poll_sec)


__all__ = ["Dispatcher", "QueueItem", "Queues", "dispatch", "queued_words", "StoreError"]
