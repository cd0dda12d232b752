"""A step type's own compile-time check, named by its catalogue line (`check="module:function"`).

Why a hook: a JSON Schema sees the shape of a step's input, not its meaning.  A jq
filter that does not parse, or a template using a construct this build does not
render, would otherwise compile and fail at that step after earlier steps had
their side effects.  The catalogue line names a function of the executor's
module; it is imported only when a step of that type is in the file (the
executor module itself imports no client at module level; jq's check loads the
small libjq binding, which is the price of checking a filter with the real
parser).  Its `StepProblem`s are reported as `invalid-format` at their place.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping

from dagu.compiler.context import DocContext, Path
from dagu.compiler.diagnostics import span_of
from dagu.executors.catalog import StepProblem, StepType

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any


def run_check(ctx: DocContext, path: Path, raw: Mapping[str, Any], line: StepType, step_id: str) -> None:
    """Call the line's check on the step and report each problem at its place in the file."""
    if not line.check:
        return
    module_name, _, func_name = line.check.partition(":")
    check = getattr(importlib.import_module(module_name), func_name)
    problems: list[StepProblem] = check(dict(raw))
    for problem in problems:
        where = f"{problem.what} of step '{step_id}'"
        value = _value_at(raw, problem.rel)
        if problem.offset is not None and isinstance(value, str):
            source, doc, place = ctx.where(path + problem.rel)
            span = span_of(doc, place)
            line_no, col = source.locate_in_scalar(span, value, problem.offset, problem.length)
            ctx.reporter.at(source, line_no, col, "invalid-format", where=where, detail=problem.detail,
                            width=max(problem.length, 1))
        else:
            ctx.report(path + problem.rel, "invalid-format", where=where, detail=problem.detail)


def _value_at(raw: Mapping[str, Any], rel: tuple[Any, ...]) -> Any:
    value: Any = raw
    for key in rel:
        if isinstance(value, Mapping):
            value = value.get(key)
        elif isinstance(value, list) and isinstance(key, int) and 0 <= key < len(value):
            value = value[key]
        else:
            return None
    return value


_BRACED = re.compile(r"\$\{[^}]*\}?")


def braced_only(ctx: DocContext, path: Path, value: Any, owner: str) -> Any:
    """A value of a `braced_only` type's step as the plan stores it: only `${...}` is parsed (each
    reference still checked and located); `$x`, backticks and backslashes are kept as written,
    since a Go template's `{{ $x }}` is its own variable and a backtick its own raw string."""
    if isinstance(value, dict):
        return {k: braced_only(ctx, path + (k,), v, owner) for k, v in value.items()}
    if isinstance(value, list):
        return [braced_only(ctx, path + (i,), v, owner) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value
    parts: list[Any] = []
    pos = 0
    for match in _BRACED.finditer(value):
        if match.start() > pos:
            parts.append(value[pos:match.start()])
        parts.extend(ctx.template(path, match.group(), owner))
        pos = match.end()
    if pos < len(value):
        parts.append(value[pos:])
    merged: list[Any] = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        else:
            merged.append(part)
    return {"$expr": merged}
