"""`dagu scheduler`: start runs when their schedules fire, catch up after downtime, never twice.

The decisions are here, over three seams a test replaces: a clock (schedule/clock.py),
the actions that start/stop/queue runs (the service's SchedulerActions, which launch
supervisors through the launcher) and a compile function (the service passes the
compiler; the runtime never imports it).  Both are handed in: schedule/ never
imports the service or the launcher.

Each turn (`Scheduler.step`): rescan the DAGs directory, then for every DAG whose
next tick is due, look at the ticks in (handled_until, now] (see
schedule/state.py for the durable state):

- A tick at most `grace_sec` (60 s) late is on time and runs.
- Without `catchup_window` an older tick is missed, like cron: recorded in
  ticks.jsonl ("missed", with a count for a range), not run.
- With `catchup_window`, ticks inside the window are run oldest first per
  `overlap_policy`, older ones recorded as missed.
- A start tick runs if fewer than `max_active_runs` runs are active; else
  `skip` records it skipped, `all` queues it (the queue starts it when a run
  ends), `latest` queues it in place of the ticks queued before.  With
  catch-up, `latest` runs only the newest missed tick.
- `skip_if_successful`: skipped when a run succeeded that started at or after
  the previous tick of the schedule (e.g. someone ran it by hand).
- `stop` ticks stop the active runs; `restart` ticks stop them, then start.

Exactly one scheduler is active per data dir: it holds an flock on
scheduler/leader.lock (the kernel drops it when the process dies however it
dies); another waits as a standby, trying every second.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from dagu.schedule import cron
from dagu.schedule.clock import SystemClock
from dagu.schedule.dag_files import Compile, DagFile, DagFiles
from dagu.schedule.state import Progress, TickJournal
from dagu.store.runs import Store, StoreError, rotate_if_large, write_atomic

GRACE_SEC = 60.0
SIZE_CAP_EVERY_SEC = 3600.0  # the data dir's max_history_size, applied this often (and at start)
LAUNCH_LOG_ROTATE_BYTES = 8 << 20  # scheduler/launch.log moves to launch.log.1 past this, checked as often
MISSED_COUNT_LIMIT = 10_000
_KIND_ORDER = {"stop": 0, "restart": 1, "start": 2}


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Scheduler:
    def __init__(self, home: str, dags_dir: str, compile: Compile, launcher: Any, clock: Any = None,
                 log: Callable[[str], None] = lambda line: None, grace_sec: float = GRACE_SEC) -> None:
        self.root = os.path.join(home, "scheduler")
        self.launcher = launcher
        self.clock = clock or SystemClock()
        self.log = log
        self.grace = grace_sec
        self.files = DagFiles(dags_dir, os.path.join(self.root, "plans"), compile, log)
        self.progress = Progress(self.root)
        self.journal = TickJournal(self.root)
        self.handled: list[tuple[str, float]] = []  # (dag, handled until) of this turn, for _commit
        self.next_due: dict[str, float | None] = {}

    # -- one turn ----------------------------------------------------------------

    def step(self) -> float | None:
        """Reload changed files, handle every due tick; return when the next tick is due (None: never)."""
        if self.files.scan():
            self.next_due.clear()
        now = self.clock.now()
        dags = self.files.dags()
        for name in set(self.next_due) - set(dags):
            del self.next_due[name]
        for name, entry in dags.items():
            due = self.next_due.get(name, now)
            if due is not None and due <= now:
                try:
                    handled = self._handle(entry, now)
                except StoreError as exc:  # full disk, unwritable data dir: say so, try again next turn
                    self.log(f"{name}: {exc}")
                    continue
                self.next_due[name] = self._next(entry, handled)
        self._commit()
        pending = [t for t in self.next_due.values() if t is not None]
        return min(pending) if pending else None

    def _commit(self) -> None:
        """After the turn's launches: its tick records (one fsync), then each DAG's progress.
        In that order, so progress never covers a tick whose record was lost; a crash before
        the end handles the turn's ticks again, and run ids keep a run from starting twice."""
        handled, self.handled = self.handled, []
        try:
            self.journal.flush()
            for name, until in handled:
                self.progress.set(name, until)
        except StoreError as exc:  # full disk: the next turn handles these ticks again
            self.log(str(exc))
            for name, _until in handled:
                self.next_due.pop(name, None)

    def _next(self, entry: DagFile, after: float) -> float | None:
        s = entry.dag.schedule
        times = [cron.next_fire(e, after) for e in (*s.start, *s.stop, *s.restart)]
        times = [t for t in times if t is not None]
        return min(times) if times else None

    def _handle(self, entry: DagFile, now: float) -> float:
        """Handle the DAG's ticks up to `now`; returns the instant they are handled until."""
        dag = entry.dag
        last, problem = self.progress.get(dag.name)
        if problem:
            self.log(problem)
        if last is None:  # first sight of this DAG: its schedule counts from now
            self.handled.append((dag.name, now))
            return now
        if now <= last:  # the clock went back: nothing is due until it passes `last` again
            return last
        horizon = max(self.grace, float(dag.catchup_window_sec or 0))
        cut = max(last, now - horizon)
        kinds = (("start", dag.schedule.start), ("stop", dag.schedule.stop), ("restart", dag.schedule.restart))
        if cut > last:
            why = "outside catchup_window" if dag.catchup_window_sec else \
                "no catchup_window: missed ticks are not run, like cron"
            for kind, entries in kinds:
                self._record_missed(entry, kind, entries, last, cut, why)
        ticks = sorted({(t, kind) for kind, entries in kinds for e in entries
                        for t in cron.fire_times(e, cut, now)}, key=lambda tk: (tk[0], _KIND_ORDER[tk[1]]))
        newest = {kind: max((t for t, k in ticks if k == kind), default=None) for kind, _ in kinds}
        for t, kind in ticks:
            record = {"at": now, "dag": dag.name, "tick": t, "tick_utc": _utc(t), "kind": kind,
                      "late_sec": round(now - t, 3)}
            superseded = t != newest[kind] and (kind != "start" or dag.overlap_policy == "latest")
            if superseded:
                record.update(action="skipped", reason="superseded by a newer tick"
                              + (" (overlap_policy latest)" if kind == "start" else ""))
            else:
                try:
                    self._act(entry, kind, t, record)
                except Exception as exc:  # one failed launch does not stop the others
                    record.update(action="failed", reason=f"{type(exc).__name__}: {exc}")
            self.journal.add(record)
            self.log(f"{dag.name}: {kind} tick {_utc(t)}: {record['action']}"
                     + (f" {record['run_id']}" if record.get("run_id") else "")
                     + (f" ({record['reason']})" if record.get("reason") else ""))
        self.handled.append((dag.name, now))
        return now

    def _record_missed(self, entry: DagFile, kind: str, entries, last: float, cut: float, why: str) -> None:
        """One record per range of missed ticks.  Missed start ticks also become one run with
        status missed (id: the first tick's), whose failure handlers notify; a restart that
        handles the range again finds that run and does not record it twice."""
        dag = entry.dag.name
        missed = sorted({t for e in entries for t in cron.fire_times(e, last, cut, limit=MISSED_COUNT_LIMIT)})
        if not missed:
            return
        record = {"at": self.clock.now(), "dag": dag, "kind": kind, "action": "missed",
                  "tick": missed[0], "tick_utc": _utc(missed[0]), "last_tick": missed[-1],
                  "count": len(missed), "reason": why}
        if kind == "start":
            run_id = f"{dag}-{cron.stamp(missed[0])}"
            text = (f"missed {len(missed)} scheduled tick(s) {_utc(missed[0])} .. {_utc(missed[-1])}: "
                    f"the scheduler was not running then ({why})")
            try:
                if not self.launcher.exists(dag, run_id):
                    self.launcher.missed(entry.plan, entry.plan_path, run_id, text)
                record["run_id"] = run_id
            except Exception as exc:  # the record below still says what was missed
                record["notify_error"] = f"{type(exc).__name__}: {exc}"
        self.journal.add(record)
        self.log(f"{dag}: missed {len(missed)} {kind} tick(s) {_utc(missed[0])} .. {_utc(missed[-1])} ({why})")

    # -- acting on one tick ------------------------------------------------------

    def _act(self, entry: DagFile, kind: str, t: float, record: dict[str, Any]) -> None:
        dag, plan = entry.dag, entry.plan
        run_id = f"{dag.name}-{cron.stamp(t)}"
        if kind == "stop":
            active = self.launcher.active(dag.name)
            if active:
                self.launcher.stop(dag.name)
                record.update(action="stopped")
            else:
                record.update(action="skipped", reason="no active run to stop")
            return
        record["run_id"] = run_id
        if self.launcher.exists(dag.name, run_id):
            record.update(action="exists", reason="this tick's run was started before")
        elif kind == "restart":
            self.launcher.restart(plan, entry.plan_path, run_id)
            record.update(action="restarted")
        elif dag.skip_if_successful and self._succeeded_since_previous_tick(entry, t):
            record.update(action="skipped", reason="skip_if_successful: a run succeeded since the previous tick")
        elif (active := self.launcher.active(dag.name)) < max(1, dag.max_active_runs):
            self.launcher.start(plan, entry.plan_path, run_id)
            record.update(action="started")
        elif dag.overlap_policy == "skip":
            names = ", ".join(self.launcher.active_ids(dag.name)) or "?"
            record.update(action="skipped", reason=f"overlap_policy skip: {active} active run(s) ({names}), "
                                                   f"max_active_runs {dag.max_active_runs}")
        else:
            self.launcher.enqueue(plan, run_id, replace=dag.overlap_policy == "latest")
            record.update(action="queued", reason=f"overlap_policy {dag.overlap_policy}: {active} active run(s)")

    def _succeeded_since_previous_tick(self, entry: DagFile, t: float) -> bool:
        previous = [p for e in entry.dag.schedule.start if (p := cron.previous_fire(e, t)) is not None]
        if not previous:
            return False
        succeeded = self.launcher.last_success(entry.dag.name)
        return succeeded is not None and succeeded >= max(previous)


# -- leadership and the loop ----------------------------------------------------


class LeaderLock:
    """An flock on scheduler/leader.lock: held while the process lives, released by the kernel."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = None

    def try_acquire(self) -> bool:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def holder(self) -> str:
        try:
            with open(self.path, encoding="utf-8") as fh:
                return fh.read().strip() or "?"
        except OSError:
            return "?"


def write_heartbeat(root: str, now: float, next_due: Mapping[str, float | None],
                    files: DagFiles | None = None, progress: Progress | None = None,
                    interval_sec: float = 10.0) -> None:
    """scheduler/heartbeat.json: this process and the time of its last turn, so `dagu status
    --scheduler` can tell a live scheduler from a dead or stalled one; per scheduled DAG its file,
    next tick (and the zone it is read in) and handled_until; and the files that do not compile,
    so a broken file is never silently missing.  Written every 10 s, so kept cheap: one small
    progress file read per DAG, and a cron walk only for a DAG whose expressions mix zones."""
    dags: dict[str, Any] = {}
    broken: list[dict[str, Any]] = []
    if files is not None:
        for name, entry in files.dags().items():
            t = next_due.get(name)
            handled = progress.get(name)[0] if progress is not None else None
            dags[name] = {"file": os.path.abspath(entry.path), "next_tick": t,
                          "next_tick_utc": _utc(t) if t is not None else None,
                          "tz": _tick_zone(entry, t, handled), "handled_until": handled}
        for f in sorted(files.files.values(), key=lambda f: f.path):
            if f.error:
                broken.append({"file": os.path.abspath(f.path), "error": f.error,
                               "dag": f.dag.name if f.dag is not None else None,
                               "keeps_last_good_plan": f.dag is not None})
    write_atomic(os.path.join(root, "heartbeat.json"), json.dumps({
        "format": 1, "pid": os.getpid(), "host": socket.gethostname(), "at": now,
        "interval_sec": interval_sec,
        "dags_dir": os.path.abspath(files.directory) if files is not None else None,
        "dags_dir_problem": files.dir_problem if files is not None else None,
        "next": {dag: t for dag, t in sorted(next_due.items())},
        "dags": dags, "broken": broken}, ensure_ascii=False) + "\n")


def _tick_zone(entry: DagFile, t: float | None, after: float | None) -> str | None:
    """The zone the DAG's next tick is read in (the one zone of its expressions, nearly always)."""
    from dagu.schedule.explain import zone_name

    s = entry.dag.schedule
    entries = (*s.start, *s.stop, *s.restart)
    zones = {e.tz for e in entries}
    if len(zones) == 1:
        return zone_name(zones.pop())
    if t is None or after is None:
        return None
    for e in entries:
        if cron.next_fire(e, after) == t:
            return zone_name(e.tz)
    return None


def serve(home: str, dags_dir: str, compile: Compile, actions: Any,
          stop: Callable[[], bool], log: Callable[[str], None], clock: Any = None,
          poll_sec: float = 1.0, heartbeat_sec: float = 10.0) -> int:
    """Wait to be the leader, then schedule until `stop()` says so."""
    clock = clock or SystemClock()
    lock = LeaderLock(os.path.join(home, "scheduler", "leader.lock"))
    waiting = False
    while not lock.try_acquire():
        if not waiting:
            log(f"standby: scheduler pid {lock.holder()} holds {lock.path}; taking over when it stops")
            waiting = True
        if stop():
            return 0
        clock.sleep(1.0)
    try:
        return _lead(home, dags_dir, compile, actions, stop, log, clock, poll_sec, heartbeat_sec)
    finally:
        lock.release()


def _lead(home: str, dags_dir: str, compile: Compile, actions: Any,
          stop: Callable[[], bool], log: Callable[[str], None], clock: Any,
          poll_sec: float, heartbeat_sec: float) -> int:
    """The active scheduler's loop: schedule, dispatch the queues, beat."""
    from dagu.store.retention import apply_size_cap

    log(f"active (pid {os.getpid()}), DAGs from {dags_dir}")
    store = Store(home)
    sched = Scheduler(home, dags_dir, compile, actions, clock, log)
    sched.files.scan()
    for name in sched.files.dags():  # runs whose supervisor died while no one looked: recorded now
        actions.repair(name)
    beat, seen, capped = 0.0, None, None
    while not stop():
        wake = sched.step()
        if capped is None or clock.now() - capped >= SIZE_CAP_EVERY_SEC:
            apply_size_cap(store, None, log)  # runs also cap after they end; this catches the rest
            rotate_if_large(actions.log_path, LAUNCH_LOG_ROTATE_BYTES)
            capped = clock.now()
        try:
            actions.dispatch_queues()
        except Exception as exc:  # a damaged queue entry must not stop the schedules
            log(f"queue: {type(exc).__name__}: {exc}")
        now = clock.now()
        # beat at once when a file broke, was fixed, came or went, not up to 10 s later
        shape = sorted((f.path, f.sha256, f.error is None) for f in sched.files.files.values())
        if now - beat >= heartbeat_sec or shape != seen:
            try:
                write_heartbeat(sched.root, now, sched.next_due, sched.files, sched.progress, heartbeat_sec)
            except StoreError as exc:
                log(str(exc))
            beat, seen = now, shape
        clock.sleep(min(poll_sec, max(0.0, (wake - now) if wake is not None else poll_sec)))
    return 0
