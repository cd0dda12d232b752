"""A cron expression in words, for people reading the DAGs page: `0 3 * * *` is "at 03:00 every
day", `*/15 * * * *` "every 15 minutes", `0 9 * * 1-5` "at 09:00 on Monday to Friday".

Only the forms people write often are put in words; anything else (steps inside ranges, `L`,
`W`, `#`, a day of the month together with a day of the week, which cron reads as *either*)
comes back as the expression itself, because a wrong sentence is worse than the cron text.
Pure: no clock, no time zone, no croniter, so it is exact to test and cheap to call per DAG.
"""

from __future__ import annotations


SHORTCUTS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
DAY_NAMES = {d[:3].lower(): i for i, d in enumerate(DAYS)}
MONTH_NAMES = {m[:3].lower(): i + 1 for i, m in enumerate(MONTHS)}
MAX_TIMES = 4  # more fixed times of day than this read worse than the cron text

from dagu.spec.records import dataclass


class Unsaid(ValueError):
    """A form this module does not put in words (the caller shows the cron text)."""


@dataclass(frozen=True)
class Field:
    """One cron field: any value (`*`), every `step` values from the field's start (`*/n`), or a
    list of single values and inclusive ranges (`1,3-5`)."""

    any: bool = False
    step: int | None = None
    items: tuple[tuple[int, int], ...] = ()  # (first, last); a single value is (v, v)

    def values(self) -> list[int]:
        return sorted({v for lo, hi in self.items for v in range(lo, hi + 1)})


def _number(text: str, lo: int, hi: int, names: dict[str, int] | None) -> int:
    key = text.lower()
    if names and key in names:
        return names[key]
    if not text.isdigit():
        raise Unsaid(text)
    value = int(text)
    if not lo <= value <= hi:
        raise Unsaid(text)
    return value


def parse_field(text: str, lo: int, hi: int, names: dict[str, int] | None = None) -> Field:
    """One field; Unsaid for what is not put in words (or is not valid cron)."""
    if text in ("*", "?"):
        return Field(any=True)
    if text.startswith("*/"):
        step = _number(text[2:], 1, hi, None)
        return Field(any=True) if step == 1 else Field(step=step)
    items = []
    for part in text.split(","):
        first, sep, last = part.partition("-")
        a = _number(first, lo, hi, names)
        b = _number(last, lo, hi, names) if sep else a
        if b < a:
            raise Unsaid(part)
        items.append((a, b))
    return Field(items=tuple(items))


def join(words: list[str]) -> str:
    """`a`, `a and b`, `a, b and c`."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _named(field: Field, names: list[str], offset: int) -> str:
    """`Monday to Friday`, `Monday, Wednesday and Friday`: ranges kept as the user wrote them."""
    parts = [names[a - offset] if a == b else f"{names[a - offset]} to {names[b - offset]}"
             for a, b in field.items]
    return join(parts)


def _clock(hour: int, minute: int) -> str:
    return f"{hour:02d}:{minute:02d}"


def _time_phrase(minute: Field, hour: Field) -> tuple[str, bool]:
    """What happens within a day, and whether it is a fixed time of day (then "every day" is said)."""
    if minute.any and hour.any:
        return "every minute", False
    if minute.step and hour.any:
        return f"every {minute.step} minutes", False
    if minute.items and hour.any:
        mins = minute.values()
        if mins == [0]:
            return "every hour", False
        return "every hour at " + join([f":{m:02d}" for m in mins]), False
    if minute.items and hour.step:
        mins = minute.values()
        at = "" if mins == [0] else " at " + join([f":{m:02d}" for m in mins])
        return f"every {hour.step} hours{at}", False
    if (minute.step or minute.any) and hour.items and len(hour.items) == 1:
        a, b = hour.items[0]
        every = f"every {minute.step} minutes" if minute.step else "every minute"
        return f"{every} from {_clock(a, 0)} to {_clock(b, 59)}", False
    if minute.items and hour.items:
        mins = minute.values()
        if len(mins) == 1 and len(hour.items) == 1 and hour.items[0][0] != hour.items[0][1]:
            a, b = hour.items[0]
            at = "" if mins == [0] else f" at :{mins[0]:02d}"
            return f"every hour{at} from {_clock(a, mins[0])} to {_clock(b, mins[0])}", False
        times = [_clock(h, m) for h in hour.values() for m in mins]
        if len(times) > MAX_TIMES:
            raise Unsaid("too many times of day")
        return "at " + join(times), True
    raise Unsaid("minute and hour")


def _day_phrase(dom: Field, month: Field, dow: Field, fixed: bool) -> str:
    """Which days: every day, some days of the week, some days of the month, some months."""
    if dom.step or month.step or dow.step:
        raise Unsaid("steps in day fields")
    if not dom.any and not dow.any:
        raise Unsaid("day of month and day of week (cron fires on either)")
    months = "" if month.any else _named(month, MONTHS, 1)
    if not dow.any:
        days = dow.values()
        if set(days) >= set(range(7)) or days == list(range(1, 8)):
            return ("every day" if fixed else "") + (f" in {months}" if months else "")
        dow = Field(items=tuple((0 if a == 7 else a, 0 if b == 7 else b) for a, b in dow.items))
        if any(a > b for a, b in dow.items):
            raise Unsaid("a weekday range through Sunday as 7")
        return f"on {_named(dow, DAYS, 0)}" + (f" in {months}" if months else "")
    if not dom.any:
        dates = dom.values()
        if months and len(dates) == 1 and len(month.values()) == 1:
            return f"on {dates[0]} {months}"
        of = f"in {months}" if months else "of every month"
        return f"on day{'s' if len(dates) > 1 else ''} {join([str(d) for d in dates])} {of}"
    if months:
        return ("every day " if fixed else "") + f"in {months}"
    return "every day" if fixed else ""


def describe(expr: str) -> str:
    """The expression in words, or the expression itself when its form is not put in words."""
    text = " ".join(expr.split())
    fields = SHORTCUTS.get(text.lower(), text).split(" ")
    if len(fields) != 5:
        return text
    try:
        minute = parse_field(fields[0], 0, 59)
        hour = parse_field(fields[1], 0, 23)
        dom = parse_field(fields[2], 1, 31)
        month = parse_field(fields[3], 1, 12, MONTH_NAMES)
        dow = parse_field(fields[4], 0, 7, DAY_NAMES)
        when, fixed = _time_phrase(minute, hour)
        days = _day_phrase(dom, month, dow, fixed)
    except Unsaid:
        return text
    return f"{when} {days}".strip()
