"""Sub-DAG steps (`call`, optionally with `parallel`): each run is a separate dagu supervisor.

A called DAG runs as `dagu start PLAN --dag NAME` in its own process, so it
gets everything a top-level run has (its own state directory, logs, limits,
stop handling) and a crash in it cannot take the caller down.  The caller's
plan file is passed as is: every DAG a plan can call is inside it.  `dagu`
re-invokes itself through `ctx.self_argv`, which is the frozen binary when
frozen, never `python -m dagu` there.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

from dagu.executors.base import ExecutorError, JobContext, JobResult, Launch
from dagu.engine.evaluate import EvalError, Scope, render
from dagu.store.runs import Store

_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")


def _item_text(item: Any) -> str:
    return item if isinstance(item, str) else json.dumps(item, ensure_ascii=False, separators=(",", ":"))


class CallJob:
    def __init__(self, ctx: JobContext) -> None:
        call = ctx.step.call
        assert call is not None
        if call.dag not in ctx.plan.dags:
            raise ExecutorError(f"called DAG {call.dag!r} is not in the plan")
        self._ctx = ctx
        self._dag = call.dag
        parallel = ctx.step.parallel
        if parallel is None:
            self._items: list[Any] | None = None
            runs = [self._params(ctx.scope)]
            self._limit = 1
        else:
            self._items = self._resolve_items(ctx)
            runs = []
            for item in self._items:
                scope = replace(ctx.scope, vars={**ctx.scope.vars, "ITEM": _item_text(item)})
                runs.append(self._params(scope))
            self._limit = max(1, parallel.max_concurrent)
        base = _UNSAFE.sub("_", f"{ctx.run_id}.{ctx.step.id}.{ctx.attempt}")
        self._pending: list[Launch] = []
        for index, words in enumerate(runs):
            run_id = base if self._items is None else f"{base}.{index}"
            suffix = "" if self._items is None else f".{index}"
            argv = [*ctx.self_argv, "start", ctx.plan_path, "--dag", self._dag, "--run-id", run_id,
                    "--parent", f"{ctx.dag.name}/{ctx.run_id}", "--", *words]
            env = {**ctx.parent_env, "DAGU_HOME": ctx.home}
            self._pending.append(Launch(argv=argv, env=env, cwd=ctx.cwd, stdout=ctx.stdout + suffix,
                                        stderr=ctx.stderr + suffix, tag=(index, run_id, words), sandboxed=False))
        self._running = 0
        self._codes: dict[int, int] = {}

    @staticmethod
    def _resolve_items(ctx: JobContext) -> list[Any]:
        parallel = ctx.step.parallel
        assert parallel is not None
        if parallel.items_from is None:
            return list(parallel.items)
        text = render(parallel.items_from, ctx.scope, False).strip()
        try:
            value = json.loads(text)
        except ValueError:
            return text.split()
        if isinstance(value, list):
            return value
        raise ExecutorError(f"parallel items must be a JSON list, got {text[:80]!r}")

    def _params(self, scope: Scope) -> list[str]:
        words = []
        for entry in self._ctx.step.call.params:  # type: ignore[union-attr]
            try:
                value = render(entry.value, scope, False)
            except EvalError as exc:
                raise ExecutorError(f"param {entry.name}: {exc}") from None
            words.append(value if entry.name.isdigit() else f"{entry.name}={value}")
        return words

    def launches(self) -> list[Launch]:
        out = []
        while self._pending and self._running < self._limit:
            out.append(self._pending.pop(0))
            self._running += 1
        return out

    def exited(self, launch: Launch, returncode: int) -> None:
        self._running -= 1
        self._codes[launch.tag[0]] = returncode

    def done(self) -> bool:
        return not self._pending and self._running == 0

    def _child(self, run_id: str) -> tuple[str, dict[str, Any]]:
        view = Store(self._ctx.home).run(self._dag, run_id).read()
        return view.status.status, dict(view.status.outputs)

    def result(self) -> JobResult:
        if self._items is None:
            code = self._codes.get(0, -1)
            status, outputs = self._child(f"{_UNSAFE.sub('_', f'{self._ctx.run_id}.{self._ctx.step.id}.{self._ctx.attempt}')}")
            value = {"name": self._dag, "status": status, "outputs": outputs}
            run_id = _UNSAFE.sub('_', f'{self._ctx.run_id}.{self._ctx.step.id}.{self._ctx.attempt}')
            return JobResult(exit_code=code, output=json.dumps(value, ensure_ascii=False), outputs=outputs,
                             error=None if code == 0 else f"sub-DAG {self._dag!r} ended {status}",
                             children=[[self._dag, run_id]])
        base = _UNSAFE.sub("_", f"{self._ctx.run_id}.{self._ctx.step.id}.{self._ctx.attempt}")
        results, all_outputs, failed = [], [], 0
        for index, item in enumerate(self._items):
            status, outputs = self._child(f"{base}.{index}")
            code = self._codes.get(index, -1)
            failed += code != 0
            results.append({"item": item, "status": status, "outputs": outputs})
            all_outputs.append(outputs)
        summary = {"total": len(self._items), "succeeded": len(self._items) - failed, "failed": failed}
        value = {"summary": summary, "results": results, "outputs": all_outputs}
        return JobResult(exit_code=1 if failed else 0, output=json.dumps(value, ensure_ascii=False),
                         outputs={"summary": summary, "results": results, "items": all_outputs},
                         children=[[self._dag, f"{base}.{i}"] for i in range(len(self._items))],
                         error=f"{failed} of {len(self._items)} runs of {self._dag!r} failed" if failed else None)


def make_job(ctx: JobContext) -> CallJob:
    return CallJob(ctx)
