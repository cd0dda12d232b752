"""`dagu dry`: show what a run would do, in the order it would do it, and run nothing.

It reads only the plan, like the runtime does, so what it prints is what a run
would follow.  Conditions and router values are decided here when they depend
only on what is known before anything runs (params, dotenv, env, literals);
a value that needs a command (a backtick, a command precondition) or a step's
output is shown as decided at run time.  It assumes every step succeeds.
"""

from __future__ import annotations

import os
from dataclasses import field
from typing import Mapping

from dagu.spec.records import dataclass
from dagu.engine import conditions
from dagu.engine.evaluate import EvalError, Scope, render
from dagu.engine.params import ParamError, resolve, split_words
from dagu.engine.run_context import base_scope
from dagu.spec.plan import Condition, Dag, Matcher, Plan, Step

# What a backtick evaluates to in a dry run: nothing is executed, so the value is not known.
UNKNOWN = "\x00unknown\x00"


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
        pattern = render_template(cond.expected.pattern)
        shown = (f"{text} {cond.expected.compare} {pattern}" if cond.expected.compare else
                 f"{text} {'matches' if cond.expected.regex else 'equals'} {pattern!r}")
    return f"not ({shown})" if cond.negate else shown


def _prefix(matcher: Matcher) -> str:
    return f"num:{matcher.compare}" if matcher.compare else "re:" if matcher.regex else ""


def _what(step: Step) -> str:
    if step.call is not None:
        return f"call {step.call.dag}" + (" (parallel)" if step.parallel else "")
    if step.routes:
        value = render_template(list(step.value or []))
        return f"route {value!r}: " + ", ".join(
            f"{_prefix(r.match)}{render_template(r.match.pattern)} -> {'/'.join(r.targets)}"
            for r in step.routes)
    if step.script is not None:
        return "script" + (f" via {render_template(step.command[0])}" if step.command else "")
    if step.command:
        first = render_template(step.command[0]).strip().splitlines()
        text = first[0] if first else ""
        more = len(step.command) > 1 or len(render_template(step.command[0]).strip().splitlines()) > 1
        return (text[:60] + ("..." if len(text) > 60 or more else ""))
    return step.type


class DryError(Exception):
    """The run would be refused before anything runs (params, dotenv)."""


@dataclass
class _Walk:
    """What is known before the run: the run's variables, and each step's fate so far."""

    scope: Scope
    fate: dict[str, str] = field(default_factory=dict)  # step id -> runs|skipped|maybe|not run
    tolerated: set[str] = field(default_factory=set)  # skipped by a router: what follows still runs
    chosen: dict[str, set[str] | None] = field(default_factory=dict)  # router -> targets (None: unknown)


def _static_scope(dag: Dag, words: list[str], environ: Mapping[str, str]) -> Scope:
    """The run's variables as build_context makes them, with every backtick left unknown."""
    try:
        _base, scope = base_scope(dag, environ)
        scope.vars.update({"DAG_NAME": dag.name, "DAG_RUN_ID": "dry-run"})
        resolve(dag.params, words, scope, run=lambda _cmd, _scope: UNKNOWN)
        for entry in dag.env:
            scope.vars[entry.name] = render(entry.value, scope, False, run=lambda _cmd, _scope: UNKNOWN)
    except (ParamError, EvalError) as exc:
        raise DryError(f"{dag.file}: {exc}") from None
    return scope


def _value(parts: list, scope: Scope) -> str | None:
    """The template's text if it is known before the run, else None."""
    for part in parts:
        if isinstance(part, str) or "esc" in part:
            continue
        if "var" in part and part["var"] in scope.vars and UNKNOWN not in scope.vars[part["var"]]:
            continue
        return None  # a step's output, a backtick, or a variable only the run defines
    return render(parts, scope, False)


def _holds(matcher: Matcher, value: str, scope: Scope) -> bool | None:
    """Whether the value matches, or None when the pattern is known only at run time."""
    if _value(matcher.pattern, scope) is None:
        return None
    return conditions.matches(matcher, value, scope)  # the pattern is known: nothing runs


def _unmet(conditions: tuple[Condition, ...], scope: Scope) -> tuple[str | None, bool]:
    """(why the first known-false condition fails, whether some condition is decided only at run time)."""
    unknown = False
    for cond in conditions:
        value = _value(cond.condition, scope) if cond.expected is not None else None
        ok = _holds(cond.expected, value, scope) if value is not None and cond.expected is not None else None
        if ok is None:
            unknown = True
            continue
        if cond.negate:
            ok = not ok
        if not ok:
            return f"{_condition(cond)} is false ({value!r})", unknown
    return None, unknown


def _fate(step: Step, walk: _Walk, routers: dict[str, Step]) -> tuple[str, str]:
    """A step's fate when every step before it succeeds as far as the plan can tell."""
    maybe = None
    for d in step.depends:
        fate = walk.fate.get(d)
        if fate == "skipped" and d not in walk.tolerated:  # tolerated: continue_on skipped, or a router's
            return "skipped", f"because step {d!r} is skipped"
        if fate == "maybe":
            maybe = maybe or f"if step {d!r} runs"
    for d in step.depends:
        if d in routers and any(step.id in r.targets for r in routers[d].routes):
            chosen = walk.chosen.get(d)
            if chosen is None:
                maybe = maybe or f"if router {d!r} chooses it (its value is known only at run time)"
            elif step.id not in chosen:
                walk.tolerated.add(step.id)
                return "skipped", f"router {d!r} does not choose it"
    unmet, unknown = _unmet(step.preconditions, walk.scope)
    if unmet:
        return "skipped", f"precondition {unmet}"
    if unknown:
        maybe = maybe or "if its preconditions hold (decided at run time)"
    return ("maybe", maybe) if maybe else ("runs", "")


def describe(plan: Plan, params_flag: str | None = None, rest: list[str] | None = None,
             environ: Mapping[str, str] | None = None) -> str:
    """The dry run's report; raises DryError where a run would be refused before it starts."""
    dag = plan.main
    steps = {s.id: s for s in dag.steps}
    try:
        words = split_words(params_flag, rest or [])
    except ParamError as exc:
        raise DryError(str(exc)) from None
    scope = _static_scope(dag, words, os.environ if environ is None else environ)
    walk = _Walk(scope)
    lines = [f"dry run of DAG '{dag.name}' ({dag.type}, {len(dag.steps)} steps) from {dag.file}"]
    params = [f"{p.name}={scope.vars.get(p.name, '')}" for p in dag.params]
    if params:
        lines.append("params: " + " ".join(p.replace(UNKNOWN, "`...`") for p in params))
    for cond in dag.preconditions:
        lines.append(f"runs only if {_condition(cond)}")
    unmet, _unknown = _unmet(dag.preconditions, scope)
    if unmet:
        lines.append(f"-> no step would run: the DAG precondition {unmet}; the run would be aborted")
        lines.append("nothing was executed")
        return "\n".join(lines) + "\n"
    if "init" in dag.handlers:
        lines.append("  handler init")
    routers = {s.id: s for s in dag.steps if s.routes}
    width = max((len(s) for s in dag.order), default=4)
    pad = f"       {'':<{width}}  "
    for n, sid in enumerate(dag.order, 1):
        step = steps[sid]
        after = f"  (after {', '.join(step.depends)})" if step.depends else ""
        lines.append(f"  {n:>3}. {sid:<{width}}  {_what(step)}{after}")
        for cond in step.preconditions:
            lines.append(f"{pad}only if {_condition(cond)}")
        fate, why = _fate(step, walk, routers)
        walk.fate[sid] = fate
        if step.continue_on.skipped and fate == "skipped":
            walk.tolerated.add(sid)
        if fate == "skipped":
            lines.append(f"{pad}-> skipped: {why}")
            continue
        if fate == "maybe":
            lines.append(f"{pad}-> runs only {why}")
        if step.routes:
            value = _value(list(step.value or []), scope)
            if value is None:
                walk.chosen[sid] = None
                lines.append(f"{pad}-> routes on a value known only at run time")
            else:
                chosen = {t for r in step.routes if _holds(r.match, value, scope) for t in r.targets}
                walk.chosen[sid] = chosen
                lines.append(f"{pad}-> value {value!r} chooses {', '.join(sorted(chosen)) or 'no step'}")
        if step.repeat_policy is not None:
            lines.append(f"{pad}repeats {step.repeat_policy.mode}"
                         + (f" (at most {step.repeat_policy.limit} runs)" if step.repeat_policy.limit else ""))
        if step.retry_policy is not None and step.retry_policy.limit:
            lines.append(f"{pad}retried up to {step.retry_policy.limit} times")
        if step.options.get("approval"):
            lines.append(f"{pad}then waits for approval (dagu approve)")
    for h in ("success", "failure", "abort", "exit"):
        if h in dag.handlers:
            lines.append(f"  handler {h}")
    lines.append("nothing was executed (every step assumed to succeed)")
    return "\n".join(lines) + "\n"
