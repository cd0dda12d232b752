"""When a schedule fires: cron expressions read in a time zone, as Unix times.

croniter walks the *wall clock* of the zone (naive local times); each wall-clock
match is then mapped to real instants here, which is where daylight saving is
decided, the way Vixie cron decides it:

- An expression with a fixed hour (`30 2 * * *`) fires once per matching
  wall-clock time.  On fall-back, 02:30 happens twice: it fires at the first.
  On spring-forward, 02:30 never happens: it fires at the moment the clocks
  jump (03:00 CEST), so a daily job is neither skipped nor doubled.
- An expression whose hour field is `*` (`*/15 * * * *`, `@hourly`) follows
  real time: it fires in both copies of a repeated hour, and not at all in
  an hour that does not exist (no real time passed there).

Times are floats (Unix seconds); a tick is identified by its instant.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dagu.spec.plan import CronEntry

SHORTCUTS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
MARGIN = timedelta(hours=3)  # more than any daylight-saving shift in use
MAX_STEPS = 200_000  # an expression that (almost) never matches stops the walk here


@lru_cache(maxsize=None)
def host_zone() -> ZoneInfo | timezone:
    """The host's zone: $TZ, else /etc/localtime, else UTC."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    try:
        with open("/etc/localtime", "rb") as fh:
            return ZoneInfo.from_file(fh, key="localtime")
    except (OSError, ValueError):
        return timezone.utc


@lru_cache(maxsize=None)
def zone(name: str | None) -> ZoneInfo | timezone:
    return ZoneInfo(name) if name else host_zone()


def expression(entry: CronEntry) -> str:
    return SHORTCUTS.get(entry.expr, entry.expr)


def _local(t: float, tz) -> datetime:
    return datetime.fromtimestamp(t, tz).replace(tzinfo=None)


def instants(naive: datetime, tz, real_time: bool) -> list[float]:
    """The real instants at which wall-clock time `naive` counts as reached (see the module doc)."""
    first = naive.replace(tzinfo=tz, fold=0).timestamp()
    second = naive.replace(tzinfo=tz, fold=1).timestamp()
    if first == second:
        return [first]
    if _local(first, tz) == naive:  # a repeated wall-clock time: first < second
        return [first, second] if real_time else [first]
    if real_time:  # a wall-clock time that does not exist
        return []
    lo, hi = int(second), int(first) + 1  # local(lo) is before the gap, local(hi) after it
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _local(mid, tz) >= naive:
            hi = mid
        else:
            lo = mid
    return [float(hi)]  # the first second after the jump


def _margin(tz, a: float, b: float) -> timedelta:
    """No margin is needed when the zone's offset is the same all around [a, b]."""
    probe = [a - MARGIN.total_seconds(), b + MARGIN.total_seconds()]
    offsets = {datetime.fromtimestamp(t, tz).utcoffset() for t in probe}
    return MARGIN if len(offsets) > 1 else timedelta(0)


def _walk(entry: CronEntry, start: datetime, forward: bool) -> Iterator[tuple[datetime, list[float]]]:
    from croniter import croniter  # imported here: ~60 ms that commands without schedules skip

    expr = expression(entry)
    tz = zone(entry.tz)
    real_time = expr.split()[1] == "*"
    it = croniter(expr, start)
    for _ in range(MAX_STEPS):
        try:
            naive = it.get_next(datetime) if forward else it.get_prev(datetime)
        except Exception:  # croniter: no further match (e.g. 31 February)
            return
        yield naive, instants(naive, tz, real_time)


def fire_times(entry: CronEntry, after: float, until: float, limit: int = MAX_STEPS) -> list[float]:
    """Every instant in (after, until] at which the entry fires, oldest first (at most `limit`)."""
    if until <= after:
        return []
    tz = zone(entry.tz)
    margin = _margin(tz, after, until)
    end = _local(until, tz) + margin
    found: set[float] = set()
    for naive, times in _walk(entry, _local(after, tz) - margin, forward=True):
        if naive > end or len(found) >= limit:
            break
        found.update(t for t in times if after < t <= until)
    return sorted(found)[:limit]


def next_fire(entry: CronEntry, after: float) -> float | None:
    """The first instant after `after` at which the entry fires (None: never)."""
    tz = zone(entry.tz)
    margin = _margin(tz, after, after)
    best = None
    for naive, times in _walk(entry, _local(after, tz) - margin, forward=True):
        if best is not None and naive > _local(best, tz) + margin:
            break
        later = [t for t in times if t > after]
        if later and (best is None or min(later) < best):
            best = min(later)
    return best


def previous_fire(entry: CronEntry, before: float) -> float | None:
    """The last instant before `before` at which the entry fired (None: never)."""
    tz = zone(entry.tz)
    margin = _margin(tz, before, before)
    best = None
    for naive, times in _walk(entry, _local(before, tz) + margin, forward=False):
        if best is not None and naive < _local(best, tz) - margin:
            break
        earlier = [t for t in times if t < before]
        if earlier and (best is None or max(earlier) > best):
            best = max(earlier)
    return best


def stamp(t: float) -> str:
    """A tick as it appears in run ids: UTC, to the second, e.g. 20260329T013000Z."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y%m%dT%H%M%SZ")
