"""What workers keep in the shared data dir: heartbeats, claims, and the sweep of lost workers.

Layout, under $DAGU_HOME/distributed/ (spec/distributed.md):

    workers/<id>.json          the worker's record, replaced atomically on every heartbeat and on
                               every run it takes or ends: labels, pid, host, running runs, state
    workers/<id>.log           the worker's own log and its supervisors' output
    claims/<dag>/<run_id>.json created with O_EXCL by the worker that takes the run, before it
                               starts a supervisor: a second delivery of the same run finds it and
                               is dropped (a run starts at most once)
    plans/<dag>/<run_id>.json  the compiled plan that came in the message (the supervisor's plan file)
    sweep.lock                 flock: one worker at a time sweeps lost workers

Plain Python, no celery: `dagu workers` and the web read these without the broker.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import asdict, field
from typing import Any

from dagu.spec.records import dataclass
from dagu.process.tree import attempt_leaders, reap_run
from dagu.store.journal import Journal
from dagu.store.runs import Store, StoreError, hostname, write_atomic
from dagu.store.state import QUEUED, RUN_FINAL, apply

DEFAULT_HEARTBEAT_SEC = 5.0
LOST_AFTER_BEATS = 4  # a worker silent for this many heartbeats is lost: 20 s by default
RUNNING, STOPPING, STOPPED, LOST = "running", "stopping", "stopped", "lost"


@dataclass
class WorkerRecord:
    """One worker as its file says; `running` holds "dag/run_id" of the runs it supervises."""

    id: str
    host: str
    pid: int
    labels: dict[str, str]
    max_active_runs: int
    heartbeat_sec: float
    started_at: float
    heartbeat_at: float
    state: str = RUNNING
    running: list[str] = field(default_factory=list)
    reason: str | None = None  # why it is lost

    def lost_after(self) -> float:
        return self.heartbeat_sec * LOST_AFTER_BEATS

    def health(self, now: float | None = None) -> str:
        """ok, late (missed a beat or two), lost (silent past the bound, or swept), stopped."""
        if self.state in (STOPPED, LOST):
            return self.state
        age = (time.time() if now is None else now) - self.heartbeat_at
        if age > self.lost_after():
            return LOST
        if age > 2 * self.heartbeat_sec:
            return "late"
        return "stopping" if self.state == STOPPING else "ok"


def base(home: str) -> str:
    return os.path.join(home, "distributed")


def worker_path(home: str, worker_id: str) -> str:
    return os.path.join(base(home), "workers", f"{worker_id}.json")


def worker_log(home: str, worker_id: str) -> str:
    return os.path.join(base(home), "workers", f"{worker_id}.log")


def write_worker(home: str, record: WorkerRecord) -> None:
    write_atomic(worker_path(home, record.id), json.dumps(asdict(record), separators=(",", ":")) + "\n",
                 make_dirs=True)


def read_worker(path: str) -> WorkerRecord | None:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return WorkerRecord(**data)
    except (OSError, ValueError, TypeError):
        return None


def read_workers(home: str) -> list[WorkerRecord]:
    folder = os.path.join(base(home), "workers")
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".json"))
    except FileNotFoundError:
        return []
    return [r for r in (read_worker(os.path.join(folder, n)) for n in names) if r is not None]


def claim_path(home: str, dag: str, run_id: str, attempt: int = 0) -> str:
    """The claim of the run's first start (attempt 0) or of its n-th retry after a lost worker
    (`<run_id>.r<n>.json`): one claim per attempt, so a retry is not blocked by the first start's
    claim and still starts at most once."""
    Store(home).run(dag, run_id)  # checks both names (BadName) before they become a path
    suffix = f".r{attempt}" if attempt else ""
    return os.path.join(base(home), "claims", dag, f"{run_id}{suffix}.json")


def plan_path(home: str, dag: str, run_id: str) -> str:
    Store(home).run(dag, run_id)
    return os.path.join(base(home), "plans", dag, f"{run_id}.json")


def claim(home: str, dag: str, run_id: str, worker_id: str, op: str, attempt: int = 0,
          extra: dict[str, Any] | None = None) -> bool:
    """Take the run (its first start, or retry `attempt`) for this worker; False when someone
    already took it (a second delivery).  `extra` (the queue and env the message came with) lets a
    retry go where the run went."""
    path = claim_path(home, dag, run_id, attempt)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    try:
        os.write(fd, json.dumps({**(extra or {}), "worker": worker_id, "host": hostname(), "op": op,
                                 "attempt": attempt, "at": time.time()}).encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def end_path(home: str, dag: str, run_id: str) -> str:
    """Written by the worker when the run's supervisor has exited: {"exit", "at", "output"}."""
    return claim_path(home, dag, run_id)[:-len(".json")] + ".end.json"


def write_end(home: str, dag: str, run_id: str, code: int, output: str) -> None:
    write_atomic(end_path(home, dag, run_id), json.dumps({"exit": code, "at": time.time(), "output": output}) + "\n",
                 make_dirs=True)


def read_end(home: str, dag: str, run_id: str) -> dict[str, Any] | None:
    try:
        with open(end_path(home, dag, run_id), encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


CLAIM_GAP = 3  # retries given up before they were claimed, in a row, that read_claim looks past


def read_claim(home: str, dag: str, run_id: str) -> dict[str, Any] | None:
    """Which worker took the run last ({"worker", "host", "op", "attempt", "at", ...}: a retry's
    claim when it was retried); None for a local run (one stat: no first claim, no retry claims).
    A retry whose worker was lost before it claimed leaves a gap in the attempts; up to CLAIM_GAP
    in a row are looked past."""
    found = None
    attempt, missed = 0, 0
    while missed <= CLAIM_GAP:
        try:
            with open(claim_path(home, dag, run_id, attempt), encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            if attempt == 0:
                return None
            missed += 1
            data = None
        except (OSError, ValueError):
            data = None
        if isinstance(data, dict):
            found, missed = data, 0
        attempt += 1
    return found


def fail_lost_run(home: str, dag: str, run_id: str, reason: str) -> str | None:
    """Record a run of a lost worker failed, with the reason, unless its supervisor still holds the
    run's lock (alive after all) or it already ended.  A run that never got its folder (the worker
    died between claim and supervisor) is created from the message's plan, so it is not lost
    silently.  Then the DAG's retry_policy applies (distributed/retries.py), under the same lock.
    Returns what was done (None: nothing was written)."""
    from dagu.distributed import retries
    store = Store(home)
    run = store.run(dag, run_id)
    if not os.path.isdir(run.path):
        try:
            with open(plan_path(home, dag, run_id), encoding="utf-8") as fh:
                text = fh.read()
        except OSError:
            return None  # a queued run's folder always exists; no plan: nothing to record against
        try:
            run = store.create(dag, run_id, text)
        except StoreError:
            run = store.run(dag, run_id)  # its supervisor created it meanwhile
    if not run.acquire():
        return None  # a live supervisor: the run is not lost
    try:
        view = run.read()
        if view.status.status in RUN_FINAL:
            return _lost_before_retry(home, run, view.status, reason)
        leaders = attempt_leaders(view.status)  # before the event marks the attempts interrupted
        event: dict[str, Any] = {"ev": "interrupted", "at": time.time(), "reason": reason}
        journal = Journal(run.journal, view.status.seq)
        journal.add(event)
        apply(view.status, event)
        retry = retries.schedule(home, run, view.status, journal, reason)
        journal.close()
        run.write_snapshot(view.status)
        if view.status.host in (None, hostname()):  # what the run's steps left, on this host
            reap_run(run.path, leaders)
        return f"run {dag}/{run_id} failed: {reason}" + (f"; {retry}" if retry else "")
    finally:
        run.release()


def _lost_before_retry(home: str, run: Any, status: Any, reason: str) -> str | None:
    """A retry whose message the lost worker took but never claimed: record that attempt
    refused with the reason, and let the policy schedule the next one (run's lock held)."""
    from dagu.distributed import retries

    attempt = retries.awaited(home, status)
    if attempt is None:
        return None
    journal = Journal(run.journal, status.seq)
    event = {"ev": "retry_refused", "at": time.time(), "attempt": attempt,
             "reason": f"{reason}, after it took retry {attempt} and before it started it"}
    journal.add(event)
    apply(status, event)
    retry = retries.schedule(home, run, status, journal, reason)
    journal.close()
    run.write_snapshot(status)
    return f"run {status.dag}/{status.run_id}: retry {attempt} lost with its worker" + (f"; {retry}" if retry else "")


def sweep_lost(home: str, me: str | None = None, now: float | None = None) -> list[str]:
    """Find workers silent past their bound, fail the runs they held with the reason, and record
    them lost.  Called by every live worker each heartbeat; one sweeps at a time (flock), and
    each step is idempotent.  Returns what was done, for the worker's log."""
    now = time.time() if now is None else now
    os.makedirs(base(home), exist_ok=True)
    fd = os.open(os.path.join(base(home), "sweep.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    notes: list[str] = []
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return notes
        for record in read_workers(home):
            if record.id == me or record.state in (STOPPED, LOST) or record.health(now) != LOST:
                continue
            silent = now - record.heartbeat_at
            reason = (f"worker {record.id} on {record.host} was lost: no heartbeat for {silent:.1f} s "
                      f"(bound {record.lost_after():g} s)")
            for key in record.running:
                dag, _, run_id = key.partition("/")
                owner = read_claim(home, dag, run_id)
                if owner is not None and owner.get("worker") != record.id and not _awaits_retry(home, dag, run_id):
                    continue
                note = fail_lost_run(home, dag, run_id, reason)
                if note:
                    notes.append(note)
            record.state, record.reason, record.running = LOST, reason, []
            write_worker(home, record)
            notes.append(reason)
    finally:
        os.close(fd)
    return notes


def _awaits_retry(home: str, dag: str, run_id: str) -> bool:
    """The run waits for a retry nobody claimed (its latest claim is then an earlier worker's)."""
    from dagu.distributed import retries

    run = Store(home).run(dag, run_id)
    return os.path.isdir(run.path) and retries.awaited(home, run.read().status) is not None


def is_queued(home: str, dag: str, run_id: str) -> bool:
    run = Store(home).run(dag, run_id)
    return os.path.isdir(run.path) and run.read().status.status == QUEUED
