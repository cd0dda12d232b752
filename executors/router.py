"""Router steps: every route whose pattern matches the value runs its targets.

Upstream semantics: not first-match-wins.  A num: route needs a number:
otherwise nothing is chosen and the router fails, since a numeric gate that
silently stops gating is worse than a loud failure.  The decision goes to the
step's stdout log in upstream's text (exact patterns first, then re: ones, a
`re:.*` catch-all last), so `dagu logs --step` shows why; the chosen targets go
back in `outputs["selected"]`, which is what the engine's graph walk reads.
"""

from __future__ import annotations

from dagu.executors.base import Cancellation, StepIO, StepRequest, StepResult
from dagu.executors.matching import matches_text, number


def decide(request: StepRequest) -> tuple[set[str], str, str | None]:
    """(chosen targets, decision log, error) for the request's rendered value and routes."""
    value = request.value or ""
    chosen: set[str] = set()
    table = []
    for route in request.routes:
        if matches_text(route.pattern, value, route.regex, route.compare):
            chosen.update(route.targets)
        prefix = f"num:{route.compare}" if route.compare else "re:" if route.regex else ""
        table.append((route.regex, route.pattern == ".*" and route.regex, prefix + route.pattern, route.targets))
    lines = [f"Router evaluating: {value}"] + [
        f"  {text} -> [{' '.join(targets)}]"
        for _regex, _catch_all, text, targets in sorted(table, key=lambda row: (row[1], row[0]))]
    error = None
    if any(route.compare for route in request.routes) and number(value) is None:
        chosen = set()
        error = f"router value {value!r} is not a finite number, and a num: route needs one"
    return chosen, "\n".join(lines) + "\n", error


def run(request: StepRequest, io: StepIO, cancel: Cancellation) -> StepResult:
    chosen, log, error = decide(request)
    io.out.write(log)
    outputs = {"value": request.value or "", "selected": sorted(chosen)}
    return StepResult(exit_code=1 if error else 0, error=error, outputs=outputs)
