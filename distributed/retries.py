"""A lost worker's run and the DAG's `retry_policy`: schedule the retry, send it when it is due.

The rule (spec/distributed.md, "A worker that dies"):

- the policy is the DAG-level `retry_policy` of the run's own DAG (plan `Dag.retry_policy`, the
  default every step already has); a step-level policy retries a step inside its supervisor and
  says nothing about losing the supervisor itself;
- only a run without a parent: a sub-run's failure is its calling step's failure, and that step's
  own retry_policy decides (retrying here as well would retry twice);
- attempt n (1, 2, ...) is allowed while n <= limit; n counts the `retry_scheduled` events in the
  run's own journal, so the count survives every worker; `exit_code` filters do not apply (a
  lost supervisor has no exit code); the wait is interval_sec with the policy's backoff and cap.

Scheduling happens under the run's lock, in the same journal flush as the `interrupted` event:
a `retry_scheduled` event (the attempt, when it is due, the reason) and a pending file
`distributed/retries/<dag>/<run_id>.json`, written first, so a sweeper that dies in between
leaves a retry to send rather than a promise nobody keeps.  Every live worker's heartbeat sends
the due ones (one sender at a time, flock); a message sent twice is harmless, because attempt n
has its own claim file (records.claim_path) and starts at most once.  A retry resumes the run
like `dagu retry`: the steps that succeeded are not run again.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from dagu.launch.base import RETRY
from dagu.store.journal import Journal
from dagu.store.runs import RunDir, write_atomic
from dagu.store.state import RunStatus, apply, retry_pending

Send = Callable[[str, dict[str, Any]], None]  # (queue, message)


def pending_path(home: str, dag: str, run_id: str) -> str:
    from dagu.distributed.records import base

    return os.path.join(base(home), "retries", dag, f"{run_id}.json")


def _policy(run: RunDir, dag: str) -> Any:
    from dagu.spec.plan import PlanError, load_plan

    try:
        target = load_plan(run.plan).dags.get(dag)
    except (OSError, PlanError):
        return None
    return target.retry_policy if target is not None else None


def _queue(home: str, run: RunDir, claim: dict[str, Any] | None, dag: str) -> str | None:
    """The queue the run came through (its claim says; a call step's selector may differ from the
    DAG's), else the one its DAG's worker_selector names."""
    if claim and isinstance(claim.get("queue"), str):
        return claim["queue"]
    from dagu.distributed.routing import RoutingError, queue_for, selector_of
    from dagu.spec.plan import PlanError, load_plan

    try:
        selector = selector_of(load_plan(run.plan).dags[dag].settings)
        return queue_for(selector) if selector is not None else None
    except (OSError, PlanError, KeyError, RoutingError):
        return None


def schedule(home: str, run: RunDir, status: RunStatus, journal: Journal, reason: str) -> str | None:
    """Called with the run's lock held, after its `interrupted` event was added to `journal`:
    schedule the next attempt if the policy allows one.  Returns a note for the log, or None."""
    from dagu.distributed.records import read_claim
    from dagu.engine.policy import backoff_delay

    if status.parent is not None:
        return None
    policy = _policy(run, status.dag)
    attempt = len(status.retries) + 1
    if policy is None or attempt > policy.limit:
        return None
    claim = read_claim(home, status.dag, status.run_id)
    queue = _queue(home, run, claim, status.dag)
    if queue is None:
        return None
    now = time.time()
    due = now + backoff_delay(policy.interval_sec, policy.backoff, policy.max_interval_sec, attempt)
    entry = {"dag": status.dag, "run_id": status.run_id, "attempt": attempt, "due_at": due, "queue": queue,
             "env": (claim or {}).get("env") or [], "reason": reason}
    write_atomic(pending_path(home, status.dag, status.run_id), json.dumps(entry) + "\n", make_dirs=True)
    event = {"ev": "retry_scheduled", "at": now, "attempt": attempt, "due_at": due,
             "reason": f"retry {attempt} of {policy.limit} (the DAG's retry_policy): {reason}"}
    journal.add(event)
    apply(status, event)
    return f"retry {attempt} of {policy.limit} due in {due - now:g} s on {queue}"


@contextmanager
def _sender_lock(home: str) -> Iterator[bool]:
    from dagu.distributed.records import base

    os.makedirs(base(home), exist_ok=True)
    fd = os.open(os.path.join(base(home), "retries.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _pending(home: str) -> Iterator[str]:
    from dagu.distributed.records import base

    folder = os.path.join(base(home), "retries")
    try:
        dags = sorted(os.listdir(folder))
    except FileNotFoundError:
        return
    for dag in dags:
        try:
            names = sorted(n for n in os.listdir(os.path.join(folder, dag)) if n.endswith(".json"))
        except (NotADirectoryError, FileNotFoundError):
            continue
        for name in names:
            yield os.path.join(folder, dag, name)


def send_due(home: str, send: Send, now: float | None = None) -> list[str]:
    """Send every pending retry whose time has come (then forget it); notes for the log.  A send
    that fails (broker down) leaves the file for the next heartbeat."""
    notes: list[str] = []
    with _sender_lock(home) as mine:
        if not mine:
            return notes
        for path in _pending(home):
            try:
                with open(path, encoding="utf-8") as fh:
                    entry = json.load(fh)
            except (OSError, ValueError):
                continue
            if (time.time() if now is None else now) < float(entry.get("due_at") or 0):
                continue
            message = {"op": RETRY, "dag": entry["dag"], "run_id": entry["run_id"], "attempt": entry["attempt"],
                       "queue": entry["queue"], "env": entry.get("env") or [], "params": [], "parent": None,
                       "plan": "", "sent_at": time.time()}
            try:
                send(entry["queue"], message)
            except Exception as exc:  # noqa: BLE001 - kombu's connection errors: try again next beat
                notes.append(f"retry of {entry['dag']}/{entry['run_id']} not sent yet: {exc}")
                continue
            os.unlink(path)
            notes.append(f"run {entry['dag']}/{entry['run_id']}: retry {entry['attempt']} sent to {entry['queue']}")
    return notes


def awaited(home: str, status: RunStatus) -> int | None:
    """The attempt a retry message was sent for and nobody has claimed yet (None: no such).  A
    worker lost between taking that message and claiming it leaves this: its sweep records the
    attempt refused and schedules the next one (records.fail_lost_run)."""
    from dagu.distributed.records import claim_path

    if not retry_pending(status):
        return None
    attempt = int(status.retries[-1].get("attempt") or 0)
    return None if os.path.exists(claim_path(home, status.dag, status.run_id, attempt)) else attempt


def is_current(run: RunDir, attempt: int) -> bool:
    """Whether a retry message for `attempt` is the one the run's records wait for: a stale one
    (its attempt was given up, or the run moved on) is dropped by the worker that takes it."""
    if not os.path.isdir(run.path):
        return False
    status = run.read().status
    return retry_pending(status) and status.retries[-1].get("attempt") == attempt


def record_refused(run: RunDir, attempt: int, why: str) -> None:
    """The retry's supervisor exited without taking the run (the DAG at max_active_runs, ...): say
    so in the run's records, so nobody waits for that retry any longer."""
    if not run.acquire():
        return  # a live supervisor holds it after all
    try:
        view = run.read()
        if not retry_pending(view.status) or view.status.retries[-1].get("attempt") != attempt:
            return
        journal = Journal(run.journal, view.status.seq)
        event = {"ev": "retry_refused", "at": time.time(), "attempt": attempt, "reason": why[-2000:] or "refused"}
        journal.add(event)
        journal.close()
        apply(view.status, event)
        run.write_snapshot(view.status)
    finally:
        run.release()
