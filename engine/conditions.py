"""Checking conditions: preconditions, repeat conditions and continue_on.output lines.

The comparison itself is executors.matching's (the router executor uses the
same one); here the patterns are rendered in a scope first.  These are plain
functions of a scope: the supervisor calls them on its loop for values, and on
a worker thread when a condition runs a command (see Supervisor._check_on_thread).
"""

from __future__ import annotations

from dagu.engine.evaluate import Scope, render
from dagu.executors.matching import matches_text, number
from dagu.spec.plan import Condition, Matcher

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["matches", "number", "runs_commands", "unmet"]


def matches(matcher: Matcher, value: str, scope: Scope, contains: bool = False) -> bool:
    """The matcher's pattern rendered in the scope, compared with the value (executors.matching)."""
    pattern = render(matcher.pattern, scope, False)
    return matches_text(pattern, value, matcher.regex, matcher.compare, contains)


def value_matches(matcher: Matcher, value: str, scope: Scope) -> bool:
    """A precondition's value against its `expected` (spec 023): a literal or `re:` pattern
    passes when it matches any one line of a multi-line value; a `num:` compares the whole."""
    if matcher.compare or "\n" not in value:
        return matches(matcher, value, scope)
    pattern = render(matcher.pattern, scope, False)
    return any(matches_text(pattern, line, matcher.regex) for line in value.split("\n"))


def unmet(conditions: tuple[Condition, ...], scope: Scope, cwd: str, env: dict[str, str]) -> str | None:
    """The first condition that does not hold, described, or None."""
    for cond in conditions:
        if cond.expected is None:
            import subprocess  # a command condition only: most runs check none

            command = render(cond.condition, scope, True)
            ok = subprocess.run(["sh", "-c", command], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
            text = f"`{command}` exited nonzero"
        else:
            value = render(cond.condition, scope, False)
            ok = value_matches(cond.expected, value, scope)
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
