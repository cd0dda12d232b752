"""Schedules: cron strings checked at compile time, so a typo fails CI, not the 3 a.m. run."""

from __future__ import annotations


from dagu.compiler.context import DocContext, Path
from dagu.spec.plan import CronEntry, Schedule

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any

SHORTCUTS = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})
_FIELD_NAMES = ("minute", "hour", "day of month", "month", "day of week")
_FIELD_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


def check_timezone(ctx: DocContext, path: Path, tz: str) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # here: most files name no time zone

    try:
        ZoneInfo(tz)
        return True
    except (ZoneInfoNotFoundError, ValueError):
        ctx.report(path, "invalid-timezone", value=repr(tz), notes=["use an IANA name such as UTC or Europe/Berlin"])
        return False


def _field_problem(expr: str) -> str | None:
    """Name the first field that is out of range, which croniter's message does not."""
    for name, (low, high), part in zip(_FIELD_NAMES, _FIELD_RANGES, expr.split()):
        for piece in part.replace("/", ",").replace("-", ",").split(","):
            if piece.isdigit() and not low <= int(piece) <= high:
                return f"{name} {piece} is outside {low}-{high}"
    return None


def cron_entry(ctx: DocContext, path: Path, text: Any, default_tz: str | None) -> CronEntry | None:
    """One cron expression, with an optional `CRON_TZ=Zone ` prefix."""
    if not isinstance(text, str):
        return None
    expr = text.strip()
    tz = default_tz
    if expr.startswith(("CRON_TZ=", "TZ=")):
        prefix, _, expr = expr.partition(" ")
        tz = prefix.split("=", 1)[1]
        if not check_timezone(ctx, path, tz):
            return None
        expr = expr.strip()
    notes = ["cron has five fields: minute hour day-of-month month day-of-week, e.g. \"0 2 * * *\""]
    if expr.startswith("@"):
        if expr.lower() not in SHORTCUTS:
            ctx.report(path, "invalid-cron", value=repr(text), reason=f"unknown shortcut {expr}",
                       notes=[f"shortcuts: {', '.join(sorted(SHORTCUTS))}"])
            return None
        return CronEntry(expr=expr.lower(), tz=tz)
    fields = expr.split()
    if len(fields) != 5:
        ctx.report(path, "invalid-cron", value=repr(text), reason=f"{len(fields)} fields instead of 5", notes=notes)
        return None
    from croniter import croniter  # here, not at the top: ~60 ms that files without schedules skip

    problem = _field_problem(expr)
    if problem is None and not croniter.is_valid(expr):
        try:
            croniter(expr)
            problem = "not a valid expression"
        except Exception as exc:  # croniter raises several private error types
            problem = str(exc) or type(exc).__name__
    if problem:
        ctx.report(path, "invalid-cron", value=repr(text), reason=problem, notes=notes)
        return None
    return CronEntry(expr=expr, tz=tz)


def schedule(ctx: DocContext, path: Path, raw: Any, default_tz: str | None) -> Schedule:
    """schedule: a string, a list, or {start, stop, restart} each a string or list."""
    def entries(where: Path, value: Any) -> tuple[CronEntry, ...]:
        items = value if isinstance(value, list) else [] if value is None else [value]
        base_is_list = isinstance(value, list)
        out = []
        for i, item in enumerate(items):
            entry = cron_entry(ctx, where + (i,) if base_is_list else where, item, default_tz)
            if entry:
                out.append(entry)
        return tuple(out)

    if isinstance(raw, str) and not raw.strip():
        return Schedule()  # `schedule: ""`: no schedule, as upstream reads it
    if isinstance(raw, dict):
        return Schedule(
            start=entries(path + ("start",), raw.get("start")),
            stop=entries(path + ("stop",), raw.get("stop")),
            restart=entries(path + ("restart",), raw.get("restart")),
        )
    return Schedule(start=entries(path, raw))
