"""A sub-DAG run supervised in a fork of its caller: what the child of a `call` step runs.

A call step's launch carries the run request (`launch.base.RunRequest`) beside the
`dagu start ...` command line that would supervise it.  Starting that command costs a
new interpreter and dagu's imports, ~140 ms of CPU per sub-run; this supervisor has them
loaded, so it forks (process/fork.py) and the child calls the same engine entry the
command would reach (`runner.start`, or `runner.retry` when an earlier attempt's sub-run
is retried in place), with the plan it already holds.  The child writes what the command
would print with `-q` (warnings, a refusal) to the step's log and exits with the command's
exit status, so the call executor cannot tell the two apart.

Forking is skipped (the command line is run instead) when `DAGU_SUBRUN_FORK=0` is set
(to compare, or on a host where forking misbehaves) and while an in-process executor runs
on the supervisor's pool: its code is not ours and may hold locks a fork would inherit held
(process/fork.py has the whole rule).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from dagu.engine.run_context import RunContext
from dagu.launch.base import RETRY, START, RunRequest
from dagu.spec.plan import Plan

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any

FORK_SWITCH = "DAGU_SUBRUN_FORK"


def fork_allowed(ctx: RunContext, busy_threads: bool) -> bool:
    """Whether a sub-run may be supervised in a fork of this process now."""
    return hasattr(os, "fork") and ctx.environ.get(FORK_SWITCH, "1") != "0" and not busy_threads


def entry_for(run: Any, ctx: RunContext) -> Callable[[], int] | None:
    """What a forked child runs to supervise `run`; None when it is not a request we can run
    in-process (the launch's command line is used)."""
    if not isinstance(run, RunRequest) or run.op not in (START, RETRY) or run.env:
        return None
    plan, home = ctx.plan, ctx.home
    return lambda: supervise(run, plan, home)


def supervise(request: RunRequest, plan: Plan, home: str) -> int:
    """`dagu start -q` / `dagu retry -q` of the request, in this (forked) process: the same
    engine calls, messages and exit status."""
    from dagu.engine import runner
    from dagu.store.runs import StoreError

    environ = os.environ
    try:
        if request.op == START:
            if request.plan_path is None:
                raise runner.RunRefused("a start request needs the plan file")
            with open(request.plan_path, encoding="utf-8") as fh:  # the run keeps the file's own text
                text = fh.read()
            outcome = runner.start(plan, request.dag, list(request.params), request.run_id, home, environ,
                                   parent=request.parent, plan_text=text)
        else:
            outcome = runner.retry(request.dag, request.run_id, home, environ, step=request.step)
    except (runner.RunRefused, StoreError, OSError) as exc:
        sys.stderr.write(f"dagu {request.op}: error: {exc}\n")
        return 1
    for problem in outcome.problems:
        sys.stderr.write(f"dagu: warning: {problem}\n")
    return outcome.exit_code
