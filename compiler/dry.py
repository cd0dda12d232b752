"""`dagu dry`: show what a run would do, in the order it would do it, and run nothing.

It reads only the plan, like the runtime does, so what it prints is what a
run would follow.
"""

from __future__ import annotations

import shlex

from dagu.spec.plan import Dag, Plan, Step


def render_template(parts: list) -> str:
    """A template back as the user wrote it (for display only)."""
    out = []
    for p in parts:
        if isinstance(p, str):
            out.append(p)
        elif "var" in p:
            out.append("${" + p["var"] + "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in p.get("path", [])) + "}")
        elif "step" in p:
            out.append("${" + p["step"] + "." + p["field"] + "".join(f".{x}" for x in p.get("path", [])) + "}")
        elif "cmd" in p:
            out.append("`" + render_template(p["cmd"]) + "`")
        elif "esc" in p:
            out.append("\\$")
    return "".join(out)


def _condition(cond) -> str:
    text = render_template(cond.condition)
    if cond.expected is None:
        shown = f"`{text}` succeeds"
    else:
        shown = f"{text} {'matches' if cond.expected.regex else 'equals'} {render_template(cond.expected.pattern)!r}"
    return f"not ({shown})" if cond.negate else shown


def _what(step: Step) -> str:
    if step.call is not None:
        return f"call {step.call.dag}" + (" (parallel)" if step.parallel else "")
    if step.routes:
        value = render_template(list(step.value or []))
        return f"route {value!r}: " + ", ".join(
            f"{'re:' if r.match.regex else ''}{render_template(r.match.pattern)} -> {'/'.join(r.targets)}"
            for r in step.routes)
    if step.script is not None:
        return "script" + (f" via {render_template(step.command[0])}" if step.command else "")
    if step.command:
        first = render_template(step.command[0]).strip().splitlines()
        text = first[0] if first else ""
        more = len(step.command) > 1 or len(render_template(step.command[0]).strip().splitlines()) > 1
        return (text[:60] + ("..." if len(text) > 60 or more else ""))
    return step.type


def _params(dag: Dag, flag: str | None, rest: list[str]) -> list[str]:
    given = {p.name: render_template(p.default or []) for p in dag.params}
    tokens = (shlex.split(flag) if flag else []) + list(rest)
    position = 0
    for token in tokens:
        name, sep, value = token.partition("=")
        if sep and name and not name.isdigit():
            given[name] = value
        else:
            position += 1
            given[str(position)] = token
    return [f"{k}={v}" for k, v in given.items()]


def describe(plan: Plan, params_flag: str | None = None, rest: list[str] | None = None) -> str:
    dag = plan.main
    steps = {s.id: s for s in dag.steps}
    lines = [f"dry run of DAG '{dag.name}' ({dag.type}, {len(dag.steps)} steps) from {dag.file}"]
    params = _params(dag, params_flag, rest or [])
    if params:
        lines.append("params: " + " ".join(params))
    for cond in dag.preconditions:
        lines.append(f"runs only if {_condition(cond)}")
    if "init" in dag.handlers:
        lines.append("  handler init")
    width = max((len(s) for s in dag.order), default=4)
    for n, sid in enumerate(dag.order, 1):
        step = steps[sid]
        after = f"  (after {', '.join(step.depends)})" if step.depends else ""
        lines.append(f"  {n:>3}. {sid:<{width}}  {_what(step)}{after}")
        for cond in step.preconditions:
            lines.append(f"       {'':<{width}}  only if {_condition(cond)}")
        if step.repeat_policy is not None:
            lines.append(f"       {'':<{width}}  repeats {step.repeat_policy.mode}"
                         + (f" (at most {step.repeat_policy.limit} runs)" if step.repeat_policy.limit else ""))
        if step.retry_policy is not None and step.retry_policy.limit:
            lines.append(f"       {'':<{width}}  retried up to {step.retry_policy.limit} times")
        if step.options.get("approval"):
            lines.append(f"       {'':<{width}}  then waits for approval (dagu approve)")
    for h in ("success", "failure", "abort", "exit"):
        if h in dag.handlers:
            lines.append(f"  handler {h}")
    lines.append("nothing was executed")
    return "\n".join(lines) + "\n"
