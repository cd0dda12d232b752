"""Step types: one module per type behind executors.base's small interface.

`job_for` imports a type's module only when a step of that type runs, so a
run of plain commands never loads docker, kubernetes or openai.
"""

from __future__ import annotations

import importlib

from dagu.executors.base import ExecutorError, Job, JobContext

_MODULES = {"command": "command", "call": "call", "parallel": "call"}


def job_for(ctx: JobContext) -> Job:
    kind = "call" if ctx.step.call is not None else ctx.step.type
    module = _MODULES.get(kind)
    if module is None:
        supported = ", ".join(sorted({*_MODULES, "router", "noop"}))
        raise ExecutorError(f"step type {kind!r} is not supported by this runtime yet (supported: {supported})")
    return importlib.import_module(f"dagu.executors.{module}").make_job(ctx)
