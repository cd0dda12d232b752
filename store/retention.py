"""History that never fills the disk: delete old finished runs by age, by count and by total size.

Applied after every top-level run (runner.py), by `dagu cleanup`, and hourly
by the scheduler (`apply_size_cap`).  Three rules, in this order:

- age: a DAG's finished runs older than `hist_retention_days`;
- count: all but the newest `hist_retention_runs` finished runs of the DAG;
- size: when everything under `runs/` (plans, journals, snapshots, logs of
  every DAG) takes more than `max_history_size`, the runs that finished first,
  across all DAGs, until it fits.

What is never deleted: a run that is running, waiting for approval or queued,
one whose lock someone holds, one with no recorded event yet (it is being
created), and the run that just finished (so `dagu status` works right after).
A sub-DAG run goes with the run that called it and is not counted on its own.

Each deletion is a rename to a tombstone (store.bury) and then rmtree, and is
appended to `$DAGU_HOME/retention.log` as one JSON line; see
spec/state-format.md.  Housekeeping never fails a run: problems come back in
the report for the caller to print.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, field
from collections.abc import Callable, Iterable, Mapping

from dagu.spec.records import dataclass
from dagu.settings import ConfigError, RetentionSettings, load_settings
from dagu.store.disk_usage import RunKey, Usage, measure, tree_bytes
from dagu.process.limits import format_size
from dagu.store.state import RUN_FINAL, RunStatus
from dagu.store.runs import RunDir, Store, StoreError, append_synced, remove_tree

LOG_FILE = "retention.log"
SIZE_STAMP = "retention.stamp"  # touched when a run's end measured the whole history
AGE_STAMP = ".retention-age"  # in runs/<dag>/: touched when a run's end applied the age limit


@dataclass
class Removal:
    """One run directory deleted (or, in a dry run, that would be)."""

    dag: str
    run_id: str
    reason: str  # age | count | size
    bytes: int
    status: str
    finished_at: float | None
    parent: str | None = None  # "dag/run_id" of the run it went with, for a sub-DAG run


@dataclass
class Report:
    removed: list[Removal] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    tombstones: int = 0  # leftover deletions a crash had interrupted, finished now

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.removed)

    def summary(self, home: str) -> str | None:
        """One line for the run's stderr, or None when nothing was removed."""
        top = [r for r in self.removed if r.parent is None]
        if not top:
            return None
        reasons: dict[str, int] = {}
        for r in top:
            reasons[r.reason] = reasons.get(r.reason, 0) + 1
        why = ", ".join(f"{n} by {k}" for k, n in reasons.items())
        return (f"dagu: retention removed {len(top)} run(s), {format_size(self.bytes)} ({why}); "
                f"see {os.path.join(home, LOG_FILE)}")


@dataclass
class _Unit:
    """A top-level run and the sub-DAG runs it called: deleted together, first its children."""

    run: RunDir
    status: RunStatus
    finished_at: float
    members: list[tuple[RunDir, RunStatus]]

    def keys(self) -> list[RunKey]:
        return [(st.dag, r.run_id) for r, st in [*self.members, (self.run, self.status)]]


class RetentionLog:
    """`$DAGU_HOME/retention.log`: one JSON line per deleted run, appended and fsync'd."""

    def __init__(self, home: str) -> None:
        self.path = os.path.join(home, LOG_FILE)

    def append(self, records: Iterable[dict]) -> None:
        data = b"".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode() + b"\n" for r in records)
        if not data:
            return
        append_synced(self.path, data)

    def problem(self, message: str) -> None:
        try:
            self.append([{"at": time.time(), "error": message}])
        except OSError:
            pass  # the caller reports the problem on stderr as well


# -- the three rules ------------------------------------------------------------


def expire_dag(store: Store, dag: str, days: float | None, runs: int | None, *, keep: Iterable[RunKey] = (),
               now: float | None = None, dry_run: bool = False, report: Report | None = None) -> Report:
    """Apply age and count limits to one DAG's top-level runs.

    Cheap when there is nothing to do: with only an age limit, runs whose
    journal was written after the cutoff are not even opened; with a count
    limit, statuses are read only when the DAG has more run folders than N.
    """
    report = report if report is not None else Report()
    if not dry_run:
        report.tombstones += store.finish_tombstones(dag)
    ids = store.run_ids(dag)
    cutoff = None if days is None else (now if now is not None else time.time()) - days * 86400
    counting = runs is not None and len(ids) > runs
    if counting:
        candidates = ids
    elif cutoff is not None:
        candidates = [rid for rid in ids if _last_write(store.run(dag, rid)) < cutoff]
    else:
        return report
    keep = set(keep)
    finished = []
    for rid in candidates:
        run = store.run(dag, rid)
        view = run.read()
        st = view.status
        if st.parent is None and _finished(view.status, view.live):
            finished.append((_finish_time(st, run), run, st))
    finished.sort(key=lambda f: (f[0], f[1].run_id), reverse=True)  # newest first
    for position, (at, run, st) in enumerate(finished):
        if (dag, run.run_id) in keep:
            continue
        if cutoff is not None and at < cutoff:
            reason = "age"
        elif counting and position >= runs:
            reason = "count"
        else:
            continue
        unit = _unit(store, run, keep, st)
        if unit is not None:
            _delete(store, unit, reason, report, dry_run)
    return report


def cap_size(store: Store, max_bytes: int, *, keep: Iterable[RunKey] = (), dry_run: bool = False,
             report: Report | None = None) -> Report:
    """Delete the runs that finished first, across all DAGs, until `runs/` takes at most `max_bytes`.

    Measuring is stat-only (disk_usage.measure); snapshots are opened only
    when the total is over the cap, oldest first, and only as many as needed.
    """
    report = report if report is not None else Report()
    usage = measure(store, finish_tombstones=not dry_run)
    if not dry_run:
        report.tombstones += usage.tombstones
    excess = usage.total - max_bytes
    if excess <= 0:
        return report
    keep = set(keep)
    seen: set[RunKey] = set()
    for key in sorted(usage.runs, key=lambda k: (usage.journal_mtime.get(k, 0.0), k)):
        if excess <= 0:
            break
        if key in seen or key in keep:
            continue
        run = store.run(*key)
        view = run.read()
        if view.status.parent is not None and _parent_exists(store, view.status.parent):
            continue  # goes with its parent
        if not _finished(view.status, view.live):
            continue
        unit = _unit(store, run, keep, view.status)
        if unit is None:
            continue
        seen.update(unit.keys())
        excess -= _delete(store, unit, "size", report, dry_run, usage)
    return report


def apply_size_cap(store: Store, settings: RetentionSettings | None,
                   log: Callable[[str], None] | None = None) -> Report:
    """The scheduler's hourly pass: the size cap alone, never raising; `log` gets a line when
    something was removed or went wrong.  With `settings` None they are read from config.yaml
    and the environment now (a bad value is logged and the pass skipped)."""
    report = Report()
    try:
        if settings is None:
            settings = load_settings(store.home, os.environ)
        if settings.max_history_size is not None:
            cap_size(store, settings.max_history_size, report=report)
    except (ConfigError, OSError, StoreError) as exc:
        report.problems.append(f"history retention skipped: {exc}")
        RetentionLog(store.home).problem(str(exc))
    if log is not None:
        for line in [report.summary(store.home), *report.problems]:
            if line:
                log(line)
    return report


def after_run(store: Store, dag: str, run_id: str, dag_days: int | None, dag_runs: int | None,
              environ: Mapping[str, str], now: float | None = None) -> Report:
    """What runner.py calls once a top-level run has ended: the DAG's limits, then the size cap.

    A DAG's own keys win over config.yaml's defaults.  A bad config.yaml or
    an unreadable file is reported (and logged) and retention is skipped:
    the run's own result stands.
    """
    report = Report()
    log = RetentionLog(store.home)
    try:
        settings = load_settings(store.home, environ)
    except ConfigError as exc:
        report.problems.append(f"history retention skipped: {exc}")
        log.problem(str(exc))
        return report
    days = dag_days if dag_days is not None else settings.hist_retention_days
    runs = dag_runs if dag_runs is not None else settings.hist_retention_runs
    keep = {(dag, run_id)}
    try:
        if days is not None and not _due(os.path.join(store.dag_dir(dag), AGE_STAMP), min(3600, days * 3600)):
            days = None  # checked lately: a run ages by days, and the pass stats every run the DAG keeps
        if days is not None or runs is not None:
            expire_dag(store, dag, days, runs, keep=keep, now=now, report=report)
        if settings.max_history_size is not None and \
                _due(os.path.join(store.home, SIZE_STAMP), settings.history_size_check_sec):
            cap_size(store, settings.max_history_size, keep=keep, report=report)
    except (OSError, StoreError) as exc:
        report.problems.append(f"history retention stopped: {exc}")
        log.problem(str(exc))
    return report


# -- deciding and deleting ------------------------------------------------------


def _due(stamp: str, every_sec: float | None) -> bool:
    """Whether a costly pass is due: none was made in the last `every_sec` (the stamp file's
    mtime says when one last was; it is touched now).  0/None: always."""
    if not every_sec:
        return True
    try:
        if time.time() - os.stat(stamp).st_mtime < every_sec:
            return False
    except FileNotFoundError:
        pass
    os.close(os.open(stamp, os.O_WRONLY | os.O_CREAT, 0o644))
    os.utime(stamp)
    return True


def _finished(status: RunStatus, live: bool) -> bool:
    """Finished for good: a final status, at least one recorded event, and no supervisor."""
    return status.status in RUN_FINAL and status.seq > 0 and not live


def _last_write(run: RunDir) -> float:
    """When the run last recorded anything: its journal's mtime (the folder's if it has none)."""
    for path in (run.journal, run.path):
        try:
            return os.stat(path).st_mtime
        except OSError:
            continue
    return float("inf")  # vanished: nothing to expire


def _finish_time(status: RunStatus, run: RunDir) -> float:
    """The earlier of `finished_at` and the journal's last write.

    They agree for a run that finished normally; for a run whose supervisor
    died and nobody has recorded that yet, the status says "now" (read
    without repair) while the journal says when it last did anything.
    """
    times = [t for t in (status.finished_at, _last_write(run)) if t is not None and t != float("inf")]
    return min(times) if times else (status.started_at or 0.0)


def _parent_exists(store: Store, parent: str) -> bool:
    dag, _, run_id = parent.partition("/")
    return bool(run_id) and store.exists(dag, run_id)


def _unit(store: Store, run: RunDir, keep: set[RunKey], status: RunStatus | None = None) -> _Unit | None:
    """The run with its sub-DAG runs, or None if any of them must stay."""
    status = status or run.read().status
    members: list[tuple[RunDir, RunStatus]] = []
    pending = [status]
    seen = {(status.dag, run.run_id)}
    while pending:
        current = pending.pop()
        for state in (*current.steps.values(), *current.handlers.values()):
            for attempt in state.attempts:
                for child_dag, child_id in attempt.children or ():
                    key = (child_dag, child_id)
                    if key in seen or not store.exists(child_dag, child_id):
                        continue  # gone, or names from a damaged record that are no run folder
                    child = store.run(child_dag, child_id)
                    seen.add(key)
                    view = child.read()
                    if key in keep or view.live or view.status.status not in RUN_FINAL:
                        return None
                    members.append((child, view.status))
                    pending.append(view.status)
    return _Unit(run, status, _finish_time(status, run), members)


def _delete(store: Store, unit: _Unit, reason: str, report: Report, dry_run: bool,
            usage: Usage | None = None) -> int:
    """Delete a unit (children first, so a crash never leaves a child without its parent's record).

    Every run's lock is taken first and the parent's status read again under
    it: a `dagu retry` that started meanwhile keeps its run.  Returns the
    bytes freed (0 if the unit had to stay).
    """
    runs = [*unit.members, (unit.run, unit.status)]
    sizes = [(usage.runs.get((st.dag, r.run_id)) if usage else None) or tree_bytes(r.path)[0] for r, st in runs]
    parent = f"{unit.status.dag}/{unit.run.run_id}"
    records = [Removal(st.dag, r.run_id, reason, size, st.status, _finish_time(st, r),
                       None if r is unit.run else parent) for (r, st), size in zip(runs, sizes)]
    if dry_run:
        report.removed += records
        return sum(sizes)
    held: list[RunDir] = []
    try:
        for r, _ in runs:
            try:
                if not r.acquire():
                    return 0  # someone is working on it: it stays
            except FileNotFoundError:
                return 0  # deleted by someone else meanwhile
            held.append(r)
        # Nothing can be recorded while we hold the lock; nothing was since we decided.
        if unit.run.read().status.seq != unit.status.seq:
            return 0
        tombs = []
        for r, _ in runs:
            tomb = store.bury(r)
            if tomb is not None:
                tombs.append(tomb)
    finally:
        for r in held:
            r.release()
    lines = [{"at": time.time(), **asdict(rec)} for rec in records]
    log = RetentionLog(store.home)
    try:
        log.append(lines)
        lines = []
    except OSError:
        pass  # a full disk: try again once the tombstones are gone
    for tomb in tombs:
        remove_tree(tomb)
    if lines:
        try:
            log.append(lines)
        except OSError as exc:
            report.problems.append(f"{log.path}: cannot record the deletion of {parent}: {exc.strerror}")
    report.removed += records
    return sum(sizes)
