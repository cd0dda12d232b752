"""Is the scheduler running, and what is it (not) doing?  Read from its files, never from it.

`dagu status --scheduler` answers from two things the active scheduler leaves
in $DAGU_HOME/scheduler/ (see schedule/state.py):

- leader.lock: a scheduler is alive iff another process holds its flock.  We
  try LOCK_EX|LOCK_NB on our own descriptor and let go at once; the kernel
  drops a dead process's lock, so this cannot be fooled by a stale pid.
- heartbeat.json: written every `interval_sec` (10 s) by its loop.  A held
  lock with a heartbeat older than STALL_BEATS intervals is a scheduler that
  lives but does not loop ("alive but stalled").

When no scheduler is alive, ticks that came due since the last one handled
(progress/<dag>.json) are computed from the DAG's last good plan
(plans/<dag>.plan.json) with schedule/cron.py, so a stopped scheduler shows as
missed work rather than as silence.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from dataclasses import field
from datetime import datetime, timezone
from typing import Any, Iterable

from dagu.spec.records import dataclass
from dagu.schedule import cron
from dagu.schedule.state import Progress

STALL_BEATS = 3
GRACE_SEC = 60.0  # as the scheduler's: a tick this late would still run on time
OVERDUE_LIMIT = 1000  # counting further is slow and says nothing more
KINDS = ("start", "stop", "restart")


def scheduler_root(home: str) -> str:
    return os.path.join(home, "scheduler")


def lock_held(path: str) -> bool:
    """True when another open file (another process: the live scheduler) holds the flock on `path`."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False  # no lock file: no scheduler ever ran here
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _lock_pid(path: str) -> int | None:
    """The pid the leader wrote into leader.lock, if readable."""
    try:
        with open(path, encoding="utf-8") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def read_heartbeat(root: str) -> tuple[dict[str, Any] | None, str | None]:
    """(the heartbeat or None, a problem reading it or None)."""
    path = os.path.join(root, "heartbeat.json")
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        if not isinstance(data, dict) or not isinstance(data.get("at"), (int, float)):
            raise ValueError("no 'at' time")
        return data, None
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as exc:
        return None, f"{path}: unreadable heartbeat ({exc}); a scheduler rewrites it every 10 s"


def utc_text(t: float | None) -> str:
    return "-" if t is None else datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def local_text(t: float | None, zone_name: str | None) -> str:
    """`2026-03-29 03:00:00 +02:00 CEST (Europe/Berlin)`; an unknown name reads as the host's zone."""
    if t is None:
        return "-"
    from dagu.schedule.explain import local_text as wall

    try:
        tz = cron.zone(zone_name)
    except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError
        tz = cron.host_zone()
    text = wall(t, tz)
    return text if not zone_name or text.endswith(" " + zone_name) else f"{text} ({zone_name})"


def ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes}m"
    hours = minutes // 60
    return f"{hours}h{minutes % 60:02d}m" if hours < 48 else f"{hours // 24}d{hours % 24:02d}h"


@dataclass
class Overdue:
    """Ticks of one kind of one DAG that came due while no scheduler was running."""

    dag: str
    kind: str
    count: int
    first: float
    last: float
    capped: bool = False  # there are more than `count`

    def text(self) -> str:
        n = f"{self.count}+" if self.capped else str(self.count)
        what = "tick(s)" if self.kind == "start" else f"{self.kind} tick(s)"
        return f"{n} {what} missed since {utc_text(self.first)}, no scheduler is running"

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "first_utc": utc_text(self.first), "last_utc": utc_text(self.last)}


def overdue_ticks(home: str, now: float, dags: Iterable[str] | None = None) -> list[Overdue]:
    """Ticks in (handled_until, now - 60 s] of each DAG the scheduler has a last good plan of.

    `dags` limits the DAGs looked at.  A plan the last heartbeat did not list as scheduled
    (its file was removed or no longer compiled: a restarted scheduler would not run it) is
    left out, as is a plan whose source file is gone.
    """
    from dagu.spec.plan import PlanError, load_plan

    root = scheduler_root(home)
    heartbeat, _problem = read_heartbeat(root)
    known = heartbeat.get("dags") if heartbeat and isinstance(heartbeat.get("dags"), dict) else None
    plans_dir = os.path.join(root, "plans")
    if dags is None:
        try:
            dags = sorted(n[: -len(".plan.json")] for n in os.listdir(plans_dir) if n.endswith(".plan.json"))
        except OSError:
            return []
    keep = set(known) if known is not None else None
    progress = Progress(root)
    out: list[Overdue] = []
    for name in dags:
        if keep is not None and name not in keep:
            continue
        handled, _problem = progress.get(name)
        path = os.path.join(plans_dir, f"{name}.plan.json")
        if handled is None or not os.path.exists(path):
            continue
        try:
            plan = load_plan(path)
        except PlanError:
            continue
        if not os.path.exists(plan.source):
            continue
        schedule = plan.main.schedule
        for kind in KINDS:
            times: set[float] = set()
            for entry in getattr(schedule, kind):
                times.update(cron.fire_times(entry, handled, now - GRACE_SEC, limit=OVERDUE_LIMIT + 1))
            if times:
                ordered = sorted(times)[: OVERDUE_LIMIT + 1]
                capped = len(ordered) > OVERDUE_LIMIT
                ordered = ordered[:OVERDUE_LIMIT]
                out.append(Overdue(name, kind, len(ordered), ordered[0], ordered[-1], capped))
    return out


@dataclass
class SchedulerReport:
    """What `dagu status --scheduler` prints."""

    now: float
    lock_path: str
    alive: bool
    heartbeat: dict[str, Any] | None
    stalled: bool = False
    locked_for: float | None = None  # seconds since the holder took the lock, when it has not beaten yet
    problems: list[str] = field(default_factory=list)
    overdue: list[Overdue] = field(default_factory=list)

    @property
    def age(self) -> float | None:
        return self.now - float(self.heartbeat["at"]) if self.heartbeat else None

    @property
    def interval(self) -> float:
        return float((self.heartbeat or {}).get("interval_sec") or 10.0)

    @property
    def healthy(self) -> bool:
        """Alive and looping: what exit code 0 means."""
        return self.alive and not self.stalled

    def state(self) -> str:
        return "alive but stalled" if self.stalled else "alive" if self.alive else "not running"

    def dags(self) -> list[dict[str, Any]]:
        hb = self.heartbeat or {}
        if isinstance(hb.get("dags"), dict):
            return [{"dag": name, **info} for name, info in sorted(hb["dags"].items())]
        return [{"dag": name, "next_tick": t} for name, t in sorted((hb.get("next") or {}).items())]

    def broken(self) -> list[dict[str, Any]]:
        return list((self.heartbeat or {}).get("broken") or [])

    def to_dict(self) -> dict[str, Any]:
        hb = self.heartbeat or {}
        dags = [{**d, "next_tick_utc": utc_text(d.get("next_tick")) if d.get("next_tick") is not None else None,
                 "next_tick_local": local_text(d.get("next_tick"), d.get("tz"))
                 if d.get("next_tick") is not None else None} for d in self.dags()]
        return {"state": self.state(), "alive": self.alive, "stalled": self.stalled, "lock": self.lock_path,
                "pid": hb.get("pid"), "host": hb.get("host"), "last_loop": hb.get("at"),
                "last_loop_utc": utc_text(hb.get("at")) if hb else None,
                "heartbeat_age_sec": round(self.age, 3) if self.age is not None else None,
                "interval_sec": self.interval, "dags_dir": hb.get("dags_dir"), "dags": dags,
                "broken": self.broken(), "overdue": [o.to_dict() for o in self.overdue],
                "problems": self.problems}


def scheduler_report(home: str, now: float) -> SchedulerReport:
    root = scheduler_root(home)
    lock_path = os.path.join(root, "leader.lock")
    heartbeat, problem = read_heartbeat(root)
    report = SchedulerReport(now, lock_path, lock_held(lock_path), heartbeat, problems=[problem] if problem else [])
    if report.alive and heartbeat is not None and _lock_pid(lock_path) not in (None, heartbeat.get("pid")):
        report.heartbeat = None  # a standby just took over and has not beaten yet: the old beat is not its
    if report.alive and report.age is not None:
        report.stalled = report.age > STALL_BEATS * report.interval
    elif report.alive:  # no beat of the lock's holder: stalled once it has held the lock too long
        try:
            report.locked_for = now - os.stat(lock_path).st_mtime
        except OSError:
            report.locked_for = None
        report.stalled = report.locked_for is not None and report.locked_for > STALL_BEATS * report.interval
    if not report.alive:
        report.overdue = overdue_ticks(home, now)
    return report


def _liveness_line(r: SchedulerReport) -> str:
    hb = r.heartbeat or {}
    who = f"pid {hb.get('pid', '?')} on {hb.get('host', '?')}"
    last = f"last loop {ago(r.age)} ago ({utc_text(hb.get('at'))})" if r.age is not None else ""
    if r.stalled and not hb:
        return (f"scheduler: alive but stalled: pid {_lock_pid(r.lock_path) or '?'} took {r.lock_path} "
                f"{ago(r.locked_for)} ago and has not completed a loop since (it beats every {r.interval:g}s; "
                "look at its log, or restart it)")
    if r.stalled:
        return (f"scheduler: alive but stalled: {who} holds {r.lock_path} but its {last}; "
                f"it beats every {r.interval:g}s (look at its log, or restart it)")
    if r.alive:
        if not hb:
            return f"scheduler: alive (pid {_lock_pid(r.lock_path) or '?'} holds {r.lock_path}); no heartbeat yet"
        return f"scheduler: alive, {who}, {last}"
    if not hb:
        return f"scheduler: not running (no process holds {r.lock_path}, and no heartbeat was ever written)"
    return f"scheduler: not running (no process holds {r.lock_path}); last heartbeat {ago(r.age or 0)} ago from {who}"


def render_text(r: SchedulerReport) -> str:
    out = [_liveness_line(r)]
    hb = r.heartbeat or {}
    if hb.get("dags_dir"):
        out.append(f"DAGs from: {hb['dags_dir']}" + (f"  ({hb['dags_dir_problem']})" if hb.get("dags_dir_problem") else ""))
    dags = r.dags()
    if dags:
        out.append("" if r.alive else "\nas of the last heartbeat:")
        rows = [("DAG", "NEXT TICK (ITS ZONE)", "NEXT TICK (UTC)", "HANDLED UNTIL")]
        for d in dags:
            t = d.get("next_tick")
            rows.append((d["dag"], local_text(t, d.get("tz")) if t is not None else "never",
                         utc_text(t) if t is not None else "-", utc_text(d.get("handled_until"))))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        out += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[3] for row in rows]
    broken = r.broken()
    if broken:
        out += ["", "DAG files that do not compile:"]
        for b in broken:
            kept = (f"keeping its last good plan ({b['dag']})" if b.get("keeps_last_good_plan")
                    else "not scheduled")
            out.append(f"  {b['file']}: {kept}")
            out += ["    " + line for line in str(b.get("error") or "").rstrip().splitlines()]
    if r.overdue:
        out += ["", "overdue:"]
        out += [f"  {o.dag}: {o.text()}" for o in r.overdue]
    out += [f"warning: {p}" for p in r.problems]
    return "\n".join(line.rstrip() for line in out) + "\n"


def compile_warning(home: str, file: str, dag: str) -> str | None:
    """One line when the scheduler last saw `file` (or DAG `dag`) failing to compile."""
    heartbeat, _problem = read_heartbeat(scheduler_root(home))
    target = os.path.realpath(file) if os.path.isfile(file) else None
    for b in (heartbeat or {}).get("broken") or []:
        same_file = target is not None and os.path.realpath(str(b.get("file"))) == target
        if same_file or (target is None and b.get("dag") == dag):
            first = (str(b.get("error") or "").strip().splitlines() or ["does not compile"])[0]
            if b.get("keeps_last_good_plan"):
                return (f"the scheduler is running the last good plan of {b.get('dag')!r}: "
                        f"{b.get('file')} does not compile: {first}")
            return f"the scheduler does not schedule {b.get('file')}: it does not compile: {first}"
    return None
