"""What a step sees: its variables (params, env, ancestors' outputs, dagu's specials) and its
process environment, built fresh for each attempt from the run's context.

Outputs are scoped to ancestors: a step reads the `output:` of the steps it
depends on (directly or not), in the order they finished; handlers read all of
them.  This is the only place that decides what a step can see, so a step's
environment and its template values cannot disagree.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from dagu.engine import conditions
from dagu.engine.evaluate import EvalError, Scope, StepFacts, render, resolve_path
from dagu.engine.graph import Node, StepGraph
from dagu.engine.run_context import RunContext
from dagu.process import sandbox
from dagu.spec.plan import Step
from dagu.store.state import RunStatus

HANDLER_NAMES = {"init": "onInit", "success": "onSuccess", "failure": "onFailure", "abort": "onAbort",
                 "exit": "onExit", "wait": "onWait"}


class Scopes:
    """The run's shared facts (finished steps, outputs in finish order) and scopes built from them."""

    def __init__(self, ctx: RunContext, graph: StepGraph, status: RunStatus) -> None:
        self.ctx = ctx
        self.graph = graph
        self.status = status
        self.facts: dict[str, StepFacts] = {}
        self.output_order: list[tuple[str, str, str]] = []  # (step, name, value) in finish order

    def visible_outputs(self, node: Node | None) -> list[tuple[str, str]]:
        """Outputs a step may read: its ancestors' (handlers see all), oldest first."""
        if not self.output_order:
            return []
        if node is None or node.handler is not None:
            return [(n, v) for _s, n, v in self.output_order]
        ancestors = self.graph.ancestors(node.step.id)
        return [(n, v) for s, n, v in self.output_order if s in ancestors]

    def scope(self, node: Node | None, stdout: str | None = None, stderr: str | None = None) -> Scope:
        variables = dict(self.ctx.run_vars)
        for name, value in self.visible_outputs(node):
            variables[name] = value
        variables.update(self.specials(node, stdout, stderr))
        return Scope(vars=variables, env=self.env_from(variables), cwd=self.ctx.cwd, steps=self.facts)

    def step_scope(self, node: Node, stdout: str | None, stderr: str | None) -> Scope:
        """The scope an attempt runs in: the step's sandbox additions, its own env, its cwd."""
        step = node.step
        scope = self.scope(node, stdout, stderr)
        env = scope.env
        assert isinstance(env, dict)
        box = step.options.get("sandbox") or {}
        if box.get("env_passthrough") or box.get("inherit_env"):  # the step lets more of the host in
            extra = sandbox.base_environment(self.ctx.environ, box.get("env_passthrough", ()),
                                             bool(box.get("inherit_env")))
            for name, value in extra.items():
                env.setdefault(name, value)
        for entry in step.env:
            scope.vars[entry.name] = render(entry.value, scope, False)
            env[entry.name] = scope.vars[entry.name]
        scope.cwd = self.cwd(step, scope)
        return scope

    def cwd(self, step: Step, scope: Scope) -> str:
        """The step's working directory: its own `working_dir` is relative to the DAG's and is
        created when missing (spec 014); without one, the DAG's, which must exist."""
        cwd = self.ctx.cwd
        # the compiler copies the DAG's working_dir into steps as their default; that one is ctx.cwd already
        if step.working_dir is not None and step.working_dir != self.ctx.dag.working_dir:
            cwd = resolve_path(cwd, render(step.working_dir, scope, False))
            try:
                os.makedirs(cwd, exist_ok=True)
            except OSError as exc:
                raise EvalError(f"working directory {cwd} cannot be created ({exc.strerror}): "
                                "fix working_dir") from None
        if not os.path.isdir(cwd):
            raise EvalError(f"working directory {cwd} does not exist (create it, or fix working_dir)")
        return cwd

    def specials(self, node: Node | None, stdout: str | None, stderr: str | None) -> dict[str, str]:
        ctx = self.ctx
        out = {"DAG_NAME": ctx.dag.name, "DAG_RUN_ID": ctx.run_id, "DAG_RUN_LOG_FILE": "", "DAGU_HOME": ctx.home}
        if node is not None:
            out["DAG_RUN_STEP_NAME"] = HANDLER_NAMES.get(node.handler, node.handler) if node.handler \
                else node.step.name
            if stdout:
                out["DAG_RUN_LOG_FILE"] = stdout
                out["DAG_RUN_STEP_STDOUT_FILE"] = stdout
                out["DAG_RUN_STEP_STDERR_FILE"] = stderr or ""
            if node.handler:
                out["DAG_RUN_STATUS"] = self.status.status
            else:
                out.update(self.pushback_vars(node.step.id))
        return out

    def pushback_vars(self, sid: str) -> dict[str, str]:
        """What a step run again by an approval push-back is told (upstream's names): the
        iteration, the approver's feedback (also one variable per input) and its last stdout."""
        previous = self.ctx.retry_of
        pushback = previous.pushback if previous is not None else None
        if not pushback or sid not in pushback.get("reset", ()):
            return {}
        out = {k: str(v) for k, v in (pushback.get("inputs") or {}).items()}
        out["DAG_PUSHBACK_ITERATION"] = str(pushback["iteration"])
        out["DAG_PUSHBACK"] = json.dumps({k: pushback.get(k) for k in
                                          ("iteration", "by", "at", "inputs", "history")})
        old = previous.steps.get(sid) if previous is not None else None
        if old is not None and old.last is not None and old.last.stdout:
            out["DAG_PUSHBACK_PREVIOUS_STDOUT_FILE"] = old.last.stdout
        return out

    def env_from(self, variables: Mapping[str, str]) -> dict[str, str]:
        env = dict(self.ctx.base_env)
        for k, v in variables.items():
            if not k.isdigit():
                env[k] = v
        return env

    def path(self, template: list, scope: Scope) -> str:
        """A step's own stdout/stderr path, rendered and made absolute from its cwd."""
        return resolve_path(scope.cwd, render(template, scope, False))

    def repeat_condition_holds(self, node: Node, stdout: str, stderr: str) -> bool | None:
        """Whether the step's repeat_policy condition holds now (None: it could not be evaluated)."""
        condition = node.step.repeat_policy.condition  # type: ignore[union-attr]
        scope = self.scope(node, stdout, stderr)
        facts = self.facts.get(node.step.id)
        if node.step.output and facts is not None and facts.output is not None:
            scope.vars[node.step.output] = facts.output  # the run just ended's, newest first
        try:
            return conditions.unmet((condition,), scope, scope.cwd, dict(scope.env)) is None
        except EvalError:
            return None

    def output_matches(self, node: Node, stdout: str, stderr: str) -> bool:
        """Whether a line of the step's stdout matches one of its continue_on.output patterns."""
        scope = self.scope(node, stdout, stderr)
        try:
            with open(stdout, encoding="utf-8", errors="replace") as fh:
                return any(conditions.matches(m, line.rstrip("\n"), scope, contains=True)
                           for line in fh for m in node.step.continue_on.output)
        except OSError:
            return False
