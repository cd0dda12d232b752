"""Comparing a value with a pattern: exact text, `re:` regexes and `num:` comparisons.

One matcher for preconditions, router routes and continue_on.output lines, so
the three mean the same wherever a user writes them.  It works on text that is
already rendered: the engine expands `${...}` before it asks, which is what lets
the router executor use it without importing the engine.
"""

from __future__ import annotations

import re
from collections.abc import Callable

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


def matches_text(pattern: str, value: str, regex: bool = False, compare: str | None = None,
                 contains: bool = False) -> bool:
    """A `re:` pattern is searched anywhere; `num:` compares numbers; literal text must equal
    the value (or, with `contains`, appear in it, as continue_on.output reads stdout lines)."""
    if compare:
        left, right = number(value), number(pattern)
        return left is not None and right is not None and _COMPARE[compare](left, right)
    if regex:
        try:
            return re.search(pattern, value) is not None
        except re.error:
            return False
    return pattern in value if contains else value == pattern
