"""`dagu compile --explain-schedule`: when each schedule fires, and what daylight saving does to it.

A cron line says "02:30"; whether that is one run, none or two on the days
the clocks change is decided in schedule/cron.py.  This module lists the next
fire times exactly as the scheduler computes them (cron.next_fire), and looks
far enough ahead (400 days) to name the next clock change that touches each
expression, so a user learns about the spring-forward day before it happens.
Everything is relative to a `now` the caller passes, so tests are exact.
"""

from __future__ import annotations

import os
from dataclasses import field
from datetime import datetime, timedelta, timezone
from typing import Any

from dagu.spec.records import dataclass
from dagu.schedule import cron
from dagu.spec.plan import CronEntry, Plan

LOOKAHEAD_DAYS = 400
_DAY = 86400.0


def zone_name(tz: str | None) -> str:
    """The IANA name of an entry's zone; None (the host's zone) is named from $TZ or /etc/localtime."""
    if tz:
        return tz
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        return name
    target = os.path.realpath("/etc/localtime")
    if "zoneinfo/" in target:
        return target.split("zoneinfo/", 1)[1]
    return "UTC" if cron.host_zone() is timezone.utc else "localtime"


def local_text(t: float, tz: Any) -> str:
    """`2026-03-29 03:00:00 +02:00 CEST`: wall clock, offset and abbreviation."""
    d = datetime.fromtimestamp(t, tz)
    offset = d.strftime("%z")
    return f"{d:%Y-%m-%d %H:%M:%S} {offset[:3]}:{offset[3:]} {d.tzname()}"


def utc_text(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Fire:
    at: float
    local: str
    utc: str
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Explained:
    """One expression of one DAG's schedule: its zone, next fire times and next DST effect."""

    dag: str
    kind: str  # start | stop | restart
    expr: str
    zone: str
    host_zone: bool
    fires: list[Fire] = field(default_factory=list)
    dst: str | None = None  # the next clock change that changes when it runs, or None

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "fires": [f.to_dict() for f in self.fires]}


def transitions(tz: Any, start: float, end: float) -> list[tuple[float, timedelta, timedelta]]:
    """(instant, offset before, offset after) of every change of the zone's UTC offset in [start, end]."""
    def offset(t: float) -> timedelta:
        return datetime.fromtimestamp(t, tz).utcoffset() or timedelta(0)

    out = []
    t = start
    while t < end:
        nxt = min(t + _DAY, end)
        if offset(t) != offset(nxt):
            lo, hi = int(t), int(nxt)  # offset(lo) is the old one, offset(hi) the new
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if offset(mid) == offset(lo):
                    lo = mid
                else:
                    hi = mid
            out.append((float(hi), offset(lo), offset(hi)))
        t = nxt
    return out


def _matches(expr: str, lo: datetime, hi: datetime, limit: int = 4) -> list[datetime]:
    """Wall-clock times in [lo, hi) the expression names (at most `limit`)."""
    from croniter import croniter  # imported here, as in cron.py

    it = croniter(expr, lo - timedelta(seconds=1))
    out: list[datetime] = []
    while len(out) < limit:
        naive = it.get_next(datetime)
        if naive >= hi:
            break
        out.append(naive)
    return out


def _hm(times: list[datetime], one: str, many: str) -> str:
    """`02:30 does not exist` / `02:00, 02:20, 02:40 do not exist`."""
    text = ", ".join(f"{t:%H:%M}" for t in times[:3]) + (", ..." if len(times) > 3 else "")
    return f"{text} {one if len(times) == 1 else many}"


def dst_note(entry: CronEntry, now: float, days: int = LOOKAHEAD_DAYS) -> str | None:
    """What the next clock change within `days` that the expression names a time in does to it."""
    expr = cron.expression(entry)
    tz = cron.zone(entry.tz)
    real_time = expr.split()[1] == "*"
    for at, before, after in transitions(tz, now, now + days * _DAY):
        wall_old = datetime.fromtimestamp(at, timezone.utc).replace(tzinfo=None) + before
        wall_new = datetime.fromtimestamp(at, timezone.utc).replace(tzinfo=None) + after
        day = f"{wall_old:%Y-%m-%d}"
        if after > before:  # spring forward: [wall_old, wall_new) does not exist
            hit = _matches(expr, wall_old, wall_new)
            if not hit:
                continue
            head = (f"{day}: clocks go forward {wall_old:%H:%M} -> {wall_new:%H:%M}, "
                    f"so {_hm(hit, 'does not exist', 'do not exist')} that day")
            if real_time:
                return head + "; those ticks do not run (an hour field of * follows real time)"
            fired = cron.instants(hit[0], tz, real_time=False)[0]
            return (head + f"; it runs at {local_text(fired, tz)} ({utc_text(fired)}), "
                    "the first valid instant after")
        hit = _matches(expr, wall_new, wall_old)  # fall back: [wall_new, wall_old) happens twice
        if not hit:
            continue
        head = (f"{day}: clocks go back {wall_old:%H:%M} -> {wall_new:%H:%M}, "
                f"so {_hm(hit, 'happens twice', 'happen twice')} that day")
        if real_time:
            return head + "; it runs in both (an hour field of * follows real time)"
        first = cron.instants(hit[0], tz, real_time=False)[0]
        return head + f"; it runs once, at the first ({local_text(first, tz)}, {utc_text(first)})"
    return None


def _fire_note(entry: CronEntry, t: float) -> str | None:
    """Why this instant is not simply the wall-clock time the expression names, if it is not."""
    from croniter import croniter

    expr = cron.expression(entry)
    tz = cron.zone(entry.tz)
    wall = datetime.fromtimestamp(t, tz).replace(tzinfo=None)
    if not croniter.match(expr, wall):
        return "DST: the time it names does not exist that day; this is the first valid instant after"
    first = wall.replace(tzinfo=tz, fold=0).utcoffset()
    if first != wall.replace(tzinfo=tz, fold=1).utcoffset():
        if expr.split()[1] == "*":
            return "DST: this wall-clock time happens twice; it runs in both"
        return "DST: this wall-clock time happens twice; it runs once, at the first"
    return None


def explain_entry(dag: str, kind: str, entry: CronEntry, now: float, count: int = 5,
                  days: int = LOOKAHEAD_DAYS) -> Explained:
    tz = cron.zone(entry.tz)
    out = Explained(dag, kind, entry.expr, zone_name(entry.tz), entry.tz is None)
    t = now
    for _ in range(count):
        nxt = cron.next_fire(entry, t)
        if nxt is None:
            break
        out.fires.append(Fire(nxt, local_text(nxt, tz), utc_text(nxt), _fire_note(entry, nxt)))
        t = nxt
    out.dst = dst_note(entry, now, days)
    return out


def explain_plan(plan: Plan, now: float, count: int = 5, days: int = LOOKAHEAD_DAYS) -> list[Explained]:
    """Every expression of every DAG in the plan that has a schedule, the main DAG first."""
    names = [plan.root, *sorted(n for n in plan.dags if n != plan.root)]
    out = []
    for name in names:
        s = plan.dags[name].schedule
        for kind, entries in (("start", s.start), ("stop", s.stop), ("restart", s.restart)):
            out += [explain_entry(name, kind, e, now, count, days) for e in entries]
    return out


def render_text(source: str, explained: list[Explained], days: int = LOOKAHEAD_DAYS) -> str:
    if not explained:
        return f"{source}: no schedule\n"
    lines = []
    for x in explained:
        zone = x.zone + (" (the host's zone)" if x.host_zone else "")
        lines.append(f"{source}: {x.dag}: {x.kind} {x.expr!r} in {zone}")
        if not x.fires:
            lines.append("  never fires")
        for f in x.fires:
            lines.append(f"  {f.local}  =  {f.utc}" + (f"   <- {f.note}" if f.note else ""))
        lines.append(f"  DST: {x.dst}" if x.dst else f"  DST: no clock change in the next {days} days affects it")
    return "\n".join(lines) + "\n"
