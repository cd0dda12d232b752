"""What a run shares before its first step: ids, the sandboxed environment, secrets, params, env.

Built once by `build_context` (which evaluates dotenv, params and the DAG's env
and refuses bad params before anything runs); the supervisor only reads it.
"""

from __future__ import annotations

import os
from dataclasses import field
from collections.abc import Mapping

from dagu.spec.records import dataclass
from dagu.process import sandbox
from dagu.engine.evaluate import EvalError, Scope, read_dotenv, render, resolve_path
from dagu.engine.secrets import Masker, resolve_secrets
from dagu.store.state import RunStatus
from dagu.store.runs import RunDir
from dagu.spec.plan import Dag, Plan


@dataclass
class RunContext:
    """Everything about the run that is not the plan: ids, where, who called, with what."""

    plan: Plan
    plan_path: str
    dag: Dag
    run: RunDir | None  # set once params are known to be good and the run directory exists
    run_id: str
    params: list[tuple[str, str]]
    run_vars: dict[str, str]  # params + dotenv + DAG env, evaluated
    base_env: dict[str, str]  # the process environment every step starts from
    cwd: str
    home: str
    self_argv: list[str]
    environ: Mapping[str, str]  # the supervisor's own environment
    parent: str | None = None
    retry_of: RunStatus | None = None  # set by `dagu retry` and by a resume after an approval
    resume: bool = False  # keep every finished step (approval resume), not only the succeeded ones
    missed: str | None = None  # a record of scheduled ticks not run: why; only the failure/exit handlers run
    masker: Masker = field(default_factory=Masker)  # the secrets' values, masked wherever the run writes


def self_argv() -> list[str]:
    """How to run dagu itself: the frozen binary when frozen, else this Python with -m dagu."""
    import sys

    if getattr(sys, "frozen", False):
        return [sys.executable]
    return [sys.executable, "-m", "dagu"]


def base_scope(dag: Dag, environ: Mapping[str, str]) -> tuple[dict[str, str], Scope]:
    """The sandboxed process environment every step starts from, and a scope holding the
    dotenv files' variables (later files win): where params and env are evaluated next."""
    box = dag.settings.get("sandbox") or {}
    base = sandbox.base_environment(environ, box.get("env_passthrough", ()), bool(box.get("inherit_env")))
    variables: dict[str, str] = {}
    for name in dag.dotenv:
        path = resolve_path(dag.base_dir, name)
        if os.path.isfile(path):
            try:
                variables.update(read_dotenv(path))
            except (OSError, UnicodeDecodeError) as exc:
                raise EvalError(f"dotenv file {path}: {exc}") from None
    return base, Scope(vars=dict(variables), env={**base, **variables}, cwd=dag.base_dir)


def build_context(plan: Plan, plan_path: str, dag: Dag, run: RunDir | None, run_id: str, words: list[str], home: str,
                  environ: Mapping[str, str], parent: str | None = None,
                  retry_of: RunStatus | None = None) -> RunContext:
    """Evaluate what the whole run shares: sandboxed base env, dotenv, params, DAG env, working dir.

    Raises ParamError / EvalError before anything runs.
    """
    from dagu.engine.params import resolve

    base, scope = base_scope(dag, environ)
    secrets = resolve_secrets(dag, environ, home)  # values go to the steps' environment only
    base.update(secrets)
    scope.env.update(secrets)
    specials = {"DAG_NAME": dag.name, "DAG_RUN_ID": run_id}
    scope.vars.update(specials)
    if retry_of is not None:  # a retry (or resume) runs with the params its run started with
        params = [tuple(p.split("=", 1)) for p in retry_of.params if "=" in p]
        scope.vars.update(dict(params))
    else:
        params = resolve(dag.params, words, scope)
    for k, v in params:
        if not k.isdigit():
            scope.env[k] = v
    for entry in dag.env:
        value = render(entry.value, scope, False)
        scope.vars[entry.name] = value
        scope.env[entry.name] = value
    # a called DAG without its own working_dir runs where its caller's step runs (the calling
    # executor starts it there); a top-level run, in the DAG file's folder
    cwd = dag.base_dir if parent is None else os.getcwd()
    if dag.working_dir is not None:
        cwd = resolve_path(dag.base_dir, render(dag.working_dir, scope, False))
    for k in specials:
        scope.vars.pop(k, None)
    return RunContext(plan=plan, plan_path=plan_path, dag=dag, run=run, run_id=run_id, params=params,
                      run_vars=scope.vars, base_env=base, cwd=cwd, home=home, self_argv=self_argv(),
                      environ=environ, parent=parent, retry_of=retry_of, masker=Masker(secrets))
