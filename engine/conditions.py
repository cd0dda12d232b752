"""Comparing values: preconditions, router routes and continue_on.output lines.

One matcher for all of them, so `re:`, `num:` and exact text mean the same
wherever a user writes them.  These are plain functions of a scope: the
supervisor calls them on its loop for values, and on a worker thread when a
condition runs a command (see Supervisor._check_on_thread).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from typing import Any, Callable

from dagu.engine.evaluate import Scope, render
from dagu.spec.plan import Condition, Matcher, Step

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
    "<": lambda a, b: a < b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b}


def number(text: str) -> float | None:
    """The finite number `text` spells, else None (num: patterns compare only numbers)."""
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None


def matches(matcher: Matcher, value: str, scope: Scope, contains: bool = False) -> bool:
    """A `re:` pattern is searched anywhere; `num:` compares numbers; literal text must equal
    the value (or, with `contains`, appear in it, as continue_on.output reads stdout lines)."""
    pattern = render(matcher.pattern, scope, False)
    if matcher.compare:
        left, right = number(value), number(pattern)
        return left is not None and right is not None and _COMPARE[matcher.compare](left, right)
    if matcher.regex:
        try:
            return re.search(pattern, value) is not None
        except re.error:
            return False
    return pattern in value if contains else value == pattern


def unmet(conditions: tuple[Condition, ...], scope: Scope, cwd: str, env: dict[str, str]) -> str | None:
    """The first condition that does not hold, described, or None."""
    for cond in conditions:
        if cond.expected is None:
            command = render(cond.condition, scope, True)
            ok = subprocess.run(["sh", "-c", command], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
            text = f"`{command}` exited nonzero"
        else:
            value = render(cond.condition, scope, False)
            ok = matches(cond.expected, value, scope)
            wanted = render(cond.expected.pattern, scope, False)
            text = (f"{value!r} does not match {wanted!r}" if not cond.expected.compare else
                    f"{value!r} is not a number" if number(value) is None else
                    f"{value!r} is not {cond.expected.compare} {wanted}")
        if cond.negate:
            ok = not ok
            text = f"negated condition holds ({text.replace(' does not match ', ' matches ')})"
        if not ok:
            return text
    return None


def runs_commands(conditions: tuple[Condition, ...]) -> bool:
    """Whether checking the conditions runs a process (a command condition or a backtick)."""
    def has_cmd(parts: Any) -> bool:
        return any(isinstance(p, dict) and "cmd" in p for p in parts or ())
    return any(c.expected is None or has_cmd(c.condition) or has_cmd(c.expected.pattern) for c in conditions)


@dataclass
class RouteDecision:
    """What a router step decided: its value, the targets chosen, its log text, an error."""

    value: str
    chosen: set[str]
    log: str
    error: str | None = None

    @property
    def outputs(self) -> dict[str, Any]:
        return {"value": self.value, "selected": sorted(self.chosen)}


def route(step: Step, scope: Scope) -> RouteDecision:
    """Every route whose pattern matches runs its targets (upstream: not first-match-wins).
    A num: route needs a number: otherwise nothing is chosen and the router fails, since a
    numeric gate that silently stops gating is worse than a loud failure.  The log is
    upstream's text: exact patterns first, then re: ones, a `re:.*` catch-all last."""
    value = render(step.value or [], scope, False)
    chosen: set[str] = set()
    table = []
    for r in step.routes:
        if matches(r.match, value, scope):
            chosen.update(r.targets)
        pattern = render(r.match.pattern, scope, False)
        prefix = f"num:{r.match.compare}" if r.match.compare else "re:" if r.match.regex else ""
        table.append((r.match.regex, pattern == ".*" and r.match.regex, prefix + pattern, r.targets))
    lines = [f"Router evaluating: {value}"] + [
        f"  {text} -> [{' '.join(targets)}]"
        for _regex, _catch_all, text, targets in sorted(table, key=lambda row: (row[1], row[0]))]
    error = None
    if any(r.match.compare for r in step.routes) and number(value) is None:
        chosen = set()
        error = f"router value {value!r} is not a finite number, and a num: route needs one"
    return RouteDecision(value, chosen, "\n".join(lines) + "\n", error)
