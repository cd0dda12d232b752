"""Normalize the many accepted spellings of each value into one plan form.

Users write env as a map, a list of maps or `KEY=value` strings; params as a
string, a list or a map; conditions as a string, an object or a list.  These
functions accept every spelling the schema allows and return the single
representation the runtime reads.  They assume the schema pass ran, but stay
defensive: a malformed value is skipped (the schema pass already reported it)
so the later passes can still report everything else in the same run.
"""

from __future__ import annotations

import re
import shlex

from dagu.compiler.context import DocContext, Path, scalar_text
from dagu.spec.plan import (
    Condition, ContinueOn, EnvVar, Matcher, Param, RepeatPolicy, RetryPolicy,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_duration(ctx: DocContext, path: Path, value: Any) -> float | None:
    """Seconds from an int or a Go-style duration string (90s, 15m, 1h30m, 2d)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = "".join(str(value).split())
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if pos == len(text) and text:
        return total
    ctx.report(path, "invalid-duration", value=repr(value),
               notes=["write seconds as an integer, or a duration such as 90s, 15m, 6h, 1h30m"])
    return None


_NUMERIC = re.compile(r"\s*(>=|<=|==|!=|>|<)\s*(.*?)\s*")
_WHOLE_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_.]*\}")


def matcher(ctx: DocContext, path: Path, value: Any, owner: str | None, at_key: bool = False) -> Matcher:
    """`re:PATTERN` is a regex searched anywhere; `num:>=N` compares numbers; anything else
    is matched exactly."""
    text = scalar_text(value)
    if text.startswith("num:"):
        m = _NUMERIC.fullmatch(text[4:])
        operand = m.group(2) if m else ""
        if m is None or not (_finite(operand) or _WHOLE_REFERENCE.fullmatch(operand)):
            ctx.report(path, "invalid-numeric-comparison", at_key=at_key, value=repr(text))
            return Matcher(pattern=[text])
        return Matcher(pattern=ctx.template(path, operand, owner), compare=m.group(1))
    if text.startswith("re:"):
        pattern = text[3:]
        try:
            re.compile(pattern)
        except re.error as exc:
            ctx.report(path, "invalid-regex", at_key=at_key, value=repr(pattern), reason=exc.msg)
        return Matcher(pattern=[pattern] if pattern else [], regex=True)
    return Matcher(pattern=ctx.template(path, text, owner))


def env_entries(ctx: DocContext, path: Path, raw: Any, owner: str | None) -> tuple[EnvVar, ...]:
    """env as a map, a list of single-key maps, or a list of KEY=value strings, in order."""
    pairs: list[tuple[Path, str, Any]] = []
    if isinstance(raw, dict):
        pairs = [(path + (k,), k, v) for k, v in raw.items()]
    elif isinstance(raw, list):
        for i, item in enumerate(raw):
            if isinstance(item, dict):
                pairs.extend((path + (i, k), k, v) for k, v in item.items())
            elif isinstance(item, str):
                name, sep, value = item.partition("=")
                if not sep:
                    ctx.report(path + (i,), "invalid-format", where=f"env entry {item!r}",
                               detail="expected KEY=value")
                    continue
                pairs.append((path + (i,), name.strip(), value))
    out = []
    for where, name, value in pairs:
        if not _ENV_NAME.match(name):
            ctx.report(where, "invalid-format", at_key=True, where=f"env name {name!r}",
                       detail="names are letters, digits and '_', not starting with a digit")
            continue
        out.append(EnvVar(name=name, value=ctx.template(where, value, owner)))
    return tuple(out)


def params(ctx: DocContext, path: Path, raw: Any, owner: str | None = None) -> tuple[Param, ...]:
    """Declared params: positional ones are numbered 1, 2, ... in order of appearance."""
    found: list[Param] = []
    positional = 0

    def add_token(where: Path, token: str) -> None:
        nonlocal positional
        name, sep, value = token.partition("=")
        if sep and _ENV_NAME.match(name):
            found.append(Param(name=name, default=ctx.template(where, value, owner)))
        else:
            positional += 1
            found.append(Param(name=str(positional), default=ctx.template(where, token, owner), positional=True))

    if isinstance(raw, str):
        try:
            tokens = shlex.split(raw)
        except ValueError as exc:
            ctx.report(path, "invalid-param", value=repr(raw), reason=str(exc))
            tokens = []
        for token in tokens:
            add_token(path, token)
    elif isinstance(raw, dict):
        for name, value in raw.items():
            found.append(Param(name=str(name), default=None if value is None else ctx.template(path + (name,), value)))
    elif isinstance(raw, list):
        for i, item in enumerate(raw):
            where = path + (i,)
            if isinstance(item, dict) and "name" in item:
                found.append(rich_param(ctx, where, item))
            elif isinstance(item, dict):
                for name, value in item.items():
                    found.append(Param(name=str(name), default=None if value is None else ctx.template(where + (name,), value)))
            elif item is not None:
                add_token(where, scalar_text(item))
    names: dict[str, int] = {}
    for p in found:
        if p.name in names:
            ctx.report(path, "invalid-param", value=repr(p.name), reason="declared twice")
        names[p.name] = 1
    return tuple(found)


def rich_param(ctx: DocContext, path: Path, item: dict[str, Any]) -> Param:
    """A declared parameter with a type, default, required flag and allowed values."""
    name = str(item.get("name"))
    ptype = str(item.get("type", "string"))
    default = item.get("default")
    enum = tuple(item.get("enum") or ())
    if default is not None and enum and default not in enum:
        ctx.report(path + ("default",), "invalid-value", where=f"default of param '{name}'",
                   allowed=", ".join(repr(e) for e in enum), value=repr(default))
    return Param(
        name=name,
        default=None if default is None else ctx.template(path + ("default",), default),
        type=ptype,
        required=bool(item.get("required", False)),
        enum=enum,
        description=item.get("description"),
    )


def _blank(value: Any) -> bool:
    return isinstance(value, str) and not value.strip()


def condition(ctx: DocContext, path: Path, raw: Any, owner: str | None) -> Condition | None:
    """One condition; an empty one is refused (spec 023): it would hold or fail by accident."""
    if isinstance(raw, dict):
        cond = raw.get("condition", raw.get("command"))
        where = path + (("condition" if "condition" in raw else "command"),)
        expected = raw.get("expected")
        if _blank(cond):
            ctx.report(where, "empty-condition", what="condition",
                       notes=["a condition is a command, or with expected: the value to compare"])
        if _blank(expected) or (isinstance(expected, str) and expected.startswith("re:") and _blank(expected[3:])):
            ctx.report(path + ("expected",), "empty-condition",
                       what="regular expression" if expected.startswith("re:") else "expected value",
                       notes=["expected: is the text the condition's value must equal, or re: and a pattern"])
        return Condition(
            condition=ctx.template(where, cond, owner),
            expected=None if expected is None else matcher(ctx, path + ("expected",), expected, owner),
            negate=bool(raw.get("negate", False)),
        )
    if isinstance(raw, str):
        if not raw.strip():
            ctx.report(path, "empty-condition", what="condition", notes=["a condition is a command that must exit 0"])
        return Condition(condition=ctx.template(path, raw, owner))
    return None


def conditions(ctx: DocContext, path: Path, raw: Any, owner: str | None) -> tuple[Condition, ...]:
    """preconditions: a command string, one object, or a list of either."""
    items = raw if isinstance(raw, list) else [] if raw is None else [raw]
    base = path if isinstance(raw, list) else None
    out = []
    for i, item in enumerate(items):
        c = condition(ctx, base + (i,) if base is not None else path, item, owner)
        if c is not None:
            out.append(c)
    return tuple(out)


def int_list(raw: Any) -> tuple[int, ...]:
    if isinstance(raw, bool):
        return ()
    if isinstance(raw, int):
        return (raw,)
    if isinstance(raw, list):
        return tuple(v for v in raw if isinstance(v, int) and not isinstance(v, bool))
    return ()


def continue_on(ctx: DocContext, path: Path, raw: Any, owner: str | None) -> ContinueOn:
    """continue_on: the shorthand strings `failed`/`failure`/`skipped`, or the full object."""
    if isinstance(raw, str):
        word = raw.strip().lower()
        return ContinueOn(failure=word in ("failed", "failure"), skipped=word == "skipped")
    if not isinstance(raw, dict):
        return ContinueOn()
    outputs = raw.get("output")
    out_list = outputs if isinstance(outputs, list) else [] if outputs is None else [outputs]
    base = path + ("output",)
    return ContinueOn(
        failure=bool(raw.get("failure", False)),
        skipped=bool(raw.get("skipped", False)),
        exit_codes=int_list(raw.get("exit_code")),
        output=tuple(
            matcher(ctx, base + (i,) if isinstance(outputs, list) else base, o, owner)
            for i, o in enumerate(out_list)
        ),
        mark_success=bool(raw.get("mark_success", False)),
    )


def _backoff(raw: Any) -> float:
    if raw is True:
        return 2.0
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return float(raw)
    return 0.0


def retry_policy(ctx: DocContext, path: Path, raw: Any) -> RetryPolicy | None:
    if not isinstance(raw, dict):
        return None
    limit = raw.get("limit", 0)
    return RetryPolicy(
        limit=limit if isinstance(limit, int) else 0,
        interval_sec=parse_duration(ctx, path + ("interval_sec",), raw.get("interval_sec", 0)) or 0,
        exit_codes=int_list(raw.get("exit_code")),
        backoff=_backoff(raw.get("backoff")),
        max_interval_sec=parse_duration(ctx, path + ("max_interval_sec",), raw.get("max_interval_sec")),
    )


def repeat_policy(ctx: DocContext, path: Path, raw: Any, owner: str | None) -> RepeatPolicy | None:
    """repeat: while|until|true.  Without `repeat`, a condition with `expected` means
    until (repeat until it matches); a bare condition or exit_code means while."""
    if not isinstance(raw, dict):
        return None
    repeat = raw.get("repeat")
    if repeat is False:
        return None
    cond = None
    if "condition" in raw:
        cond = condition(ctx, path, {k: raw[k] for k in ("condition", "expected") if k in raw}, owner)
    if isinstance(repeat, str):
        mode = repeat
        if mode in ("while", "until") and "condition" not in raw and not int_list(raw.get("exit_code")):
            ctx.report(path + ("repeat",), "repeat-without-condition", mode=mode,
                       notes=[f"add condition: (with expected: for until) or exit_code:, "
                              f"or write repeat: true to repeat until limit"])
    elif repeat is None and "expected" in raw:
        mode = "until"
    else:
        mode = "while"
    limit = raw.get("limit")
    return RepeatPolicy(
        mode=mode,
        condition=cond,
        exit_codes=int_list(raw.get("exit_code")),
        interval_sec=parse_duration(ctx, path + ("interval_sec",), raw.get("interval_sec", 0)) or 0,
        backoff=_backoff(raw.get("backoff")),
        max_interval_sec=parse_duration(ctx, path + ("max_interval_sec",), raw.get("max_interval_sec")),
        limit=limit if isinstance(limit, int) and not isinstance(limit, bool) else None,
    )


def shell_words(ctx: DocContext, path: Path, raw: Any) -> tuple[str, ...]:
    """shell: "bash -e" or ["bash", "-e"] -> program and arguments."""
    if isinstance(raw, list):
        return tuple(scalar_text(w) for w in raw)
    if isinstance(raw, str) and raw.strip():
        try:
            return tuple(shlex.split(raw))
        except ValueError as exc:
            ctx.report(path, "invalid-format", where="shell", detail=str(exc))
    return ()


def _finite(text: str) -> bool:
    try:
        number = float(text)
    except ValueError:
        return False
    return number == number and abs(number) != float("inf")
