"""Turn a plan step into an executor's `StepRequest`: every template rendered in the step's scope.

Rendering lives here, in the engine, so that executors receive plain values and
never import the engine: a command's lines and script, the `with:`/`config:`
block, a router's value and patterns, a call's params (once per parallel item,
with `${ITEM}` set).
"""

from __future__ import annotations

import json
from dataclasses import replace

from dagu.engine.evaluate import EvalError, Scope, render, render_value
from dagu.engine.run_context import RunContext
from dagu.executors.base import ExecutorError, ResolvedCall, ResolvedRoute, StepRequest
from dagu.spec.plan import Step

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any


def item_text(item: Any) -> str:
    return item if isinstance(item, str) else json.dumps(item, ensure_ascii=False, separators=(",", ":"))


def item_words(item: Any) -> tuple[str, ...]:
    """A parallel item given to a child without `params:` (spec 018): an object's fields become
    its named params, anything else its first positional param."""
    if isinstance(item, dict):
        return tuple(f"{k}={item_text(v)}" for k, v in item.items())
    return (item_text(item),)


def resolve_call(step: Step, scope: Scope, ctx: RunContext, run_key: str = "") -> ResolvedCall:
    call = step.call
    if call is None:
        raise ExecutorError(f"step type {step.type!r} needs `call:` (the DAG to run), and this step has none")
    if call.dag not in ctx.plan.dags:
        raise ExecutorError(f"called DAG {call.dag!r} is not in the plan")

    def words(item_scope: Scope) -> tuple[str, ...]:
        out = []
        for entry in call.params:
            try:
                value = render(entry.value, item_scope, False)
            except EvalError as exc:
                raise ExecutorError(f"param {entry.name}: {exc}") from None
            out.append(value if entry.name.isdigit() else f"{entry.name}={value}")
        return tuple(out)

    selector = step.options.get("worker_selector", ctx.plan.dags[call.dag].settings.get("worker_selector"))
    selector = dict(selector) if isinstance(selector, dict) else None  # None or "local": run here
    parallel = step.parallel
    if parallel is None:
        return ResolvedCall(call.dag, (words(scope),), run_key=run_key, worker_selector=selector)
    if parallel.items_from is None:
        items = list(parallel.items)
    else:
        text = render(parallel.items_from, scope, False).strip()
        try:
            value = json.loads(text)
        except ValueError:
            value = text.split()
        if not isinstance(value, list):
            raise ExecutorError(f"parallel items must be a JSON list, got {text[:80]!r}")
        items = value
    if call.params:
        runs = tuple(words(replace(scope, vars={**scope.vars, "ITEM": item_text(item)})) for item in items)
    else:
        runs = tuple(item_words(item) for item in items)
    return ResolvedCall(call.dag, runs, items=tuple(items), max_concurrent=max(1, parallel.max_concurrent),
                        run_key=run_key, worker_selector=selector)


def named_shell(step: Step, ctx: RunContext) -> bool:
    """Whether the step names its own shell (the compiler copies the DAG's into steps that do not)."""
    return bool(step.shell) and tuple(step.shell) != tuple(ctx.dag.shell or ())


def resolve_request(step: Step, type_name: str, scope: Scope, ctx: RunContext, *, attempt: int,
                    stdout: str, stderr: str, handler: str | None = None, repeat: int = 0) -> StepRequest:
    """The request for one attempt; raises EvalError or ExecutorError when it cannot be rendered.

    A call's sub-runs are named by the step and its repetition, not its attempt: a retry (of the
    step, or `dagu retry` of the run) retries the same sub-runs, while a repetition starts new ones."""
    # text a shell runs (here or on an ssh host): a $NAME of the environment is left for that shell
    in_shell = type_name in ("command", "ssh")
    given = _with_env(scope) if _in_process(type_name) and not in_shell else scope
    request = StepRequest(
        step_id=step.id, step_name=step.name, type=type_name, dag_name=ctx.dag.name, run_id=ctx.run_id,
        attempt=attempt, env=dict(scope.env), cwd=scope.cwd, stdout=stdout, stderr=stderr,
        scratch=ctx.run.logs if ctx.run is not None else scope.cwd,
        command=[render(c, given, in_shell, defer_env=in_shell) for c in step.command],
        script=render(step.script, given, in_shell, defer_env=in_shell and not step.command)
        if step.script is not None else None,
        shell=step.shell or ctx.dag.shell, shell_named_by_step=named_shell(step, ctx),
        config=render_value(step.config, _with_env(scope)) if step.config else {},
        handler=handler, timeout_sec=step.timeout_sec, plan_path=ctx.plan_path, home=ctx.home,
        self_argv=ctx.self_argv, parent_env=ctx.environ,
        max_output_size=step.max_output_size or ctx.dag.max_output_size)
    if request.config:
        _mask_secret_fields(type_name, request.config, ctx)
    if step.routes:
        request.value = render(step.value or [], scope, False)
        request.routes = tuple(ResolvedRoute(render(r.match.pattern, scope, False), r.targets, r.match.regex,
                                             r.match.compare) for r in step.routes)
    if type_name == "call":
        key = f"{ctx.run_id}.{f'handler_{handler}' if handler else step.id}" + (f".r{repeat}" if repeat else "")
        request.call = resolve_call(step, scope, ctx, key)
    return request


def _in_process(type_name: str) -> bool:
    from dagu.executors.catalog import IN_PROCESS, by_name

    line = by_name().get(type_name)
    return line is not None and line.kind == IN_PROCESS


def _with_env(scope: Scope) -> Scope:
    """The scope an executor's `with:` block, and an in-process executor's command and script,
    render in: `${NAME}` may also name a variable of the step's environment (a `secrets:` entry,
    `${HOME}`), as a command's shell would see it, since no shell expands it later."""
    return replace(scope, vars={**scope.env, **scope.vars})


def _mask_secret_fields(type_name: str, config: dict, ctx: RunContext) -> None:
    """Add the rendered values of the type's `"x-secret": true` fields to the run's masker, so a
    password or token never reaches a log, the journal, status or an output."""
    from dagu.executors.catalog import by_name, secret_fields

    line = by_name().get(type_name)
    if line is None:
        return
    for field_path in secret_fields(line.config_schema):
        value: object = config
        for key in field_path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str) and value:
            ctx.masker.add(value)
