"""Sub-DAG steps (`call`, optionally with `parallel`): each run is a separate dagu supervisor.

A called DAG runs as its own supervisor in its own process, so it gets
everything a top-level run has (its own state directory, logs, limits, stop
handling) and a crash in it cannot take the caller down.  Each launch carries
the run request and the command line the launcher contract builds for it
(`launch.base.request_argv`): the engine supervises the request in a fork of
itself (engine/subrun.py: no new interpreter, ~1 ms) or, when it cannot fork
safely, runs the command line.  Either way the child stays a direct child of
this supervisor, which reaps and accounts it like any step process.  The
caller's plan file is passed as is: every DAG a plan can call is inside it.  The
engine has already rendered the params (once per parallel item).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from dagu.executors.base import ExecutorError, Launch, StepRequest, StepResult
from dagu.launch.base import RETRY, START, RunRequest, request_argv
from dagu.store.runs import Store
from dagu.store.state import PARTIAL, SUCCEEDED

_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")
_DONE = (SUCCEEDED, PARTIAL)


class CallJob:
    """The sub-runs of one attempt.  They are named by the call's run key, not the attempt, so
    a retry finds the runs of the attempt before: one that succeeded is kept as it is, one that
    did not is retried with `dagu retry` (its succeeded steps do not run again)."""

    def __init__(self, request: StepRequest) -> None:
        call = request.call
        if call is None:
            raise ExecutorError(f"step type {request.type!r} needs `call:` (the DAG to run)")
        self._request = request
        self._call = call
        self._base = _UNSAFE.sub("_", call.run_key or f"{request.run_id}.{request.step_id}.{request.attempt}")
        self._store = Store(request.home)
        self._pending: list[Launch] = []
        self._codes: dict[int, int] = {}
        parent = f"{request.dag_name}/{request.run_id}"
        for index, words in enumerate(call.runs):
            run_id = self._run_id(index)
            suffix = "" if call.items is None else f".{index}"
            earlier = self._earlier_status(run_id)
            if earlier in _DONE:
                self._codes[index] = 0
                continue
            run = RunRequest(op=RETRY, dag=call.dag, run_id=run_id) if earlier is not None else RunRequest(
                op=START, dag=call.dag, run_id=run_id, plan_path=request.plan_path, params=tuple(words),
                parent=parent)
            argv = request_argv(request.self_argv, run)
            env = {**request.parent_env, "DAGU_HOME": request.home}
            remote = run.op == START and call.worker_selector is not None and bool(env.get("DAGU_BROKER"))
            if remote:  # `dagu start --send`: the run goes to a worker; this process waits for its end
                cut = argv.index("--")
                argv[cut:cut] = ["--send", json.dumps(call.worker_selector, sort_keys=True)]
            self._pending.append(Launch(argv=argv, env=env, cwd=request.cwd, stdout=request.stdout + suffix,
                                        stderr=request.stderr + suffix, tag=(index, run_id, words), sandboxed=False,
                                        run=None if remote else run))
        self._limit = max(1, call.max_concurrent)
        self._running = 0

    def _run_id(self, index: int) -> str:
        return self._base if self._call.items is None else f"{self._base}.{index}"

    def _earlier_status(self, run_id: str) -> str | None:
        """How an earlier attempt's run of this id ended, or None when there is none."""
        run = self._store.run(self._call.dag, run_id)
        if not os.path.exists(run.journal):
            return None
        return run.read().status.status

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
        view = self._store.run(self._call.dag, run_id).read()
        return view.status.status, dict(view.status.outputs)

    def _failed(self, index: int, status: str) -> bool:
        """A run fails its step when it exits nonzero or ends other than succeeded (an aborted
        child, whose DAG precondition was unmet, exits 0 but did not do its work)."""
        return self._codes.get(index, -1) != 0 or status not in _DONE

    def result(self) -> StepResult:
        dag = self._call.dag
        if self._call.items is None:
            status, outputs = self._child(self._base)
            code = (self._codes.get(0, -1) or 1) if self._failed(0, status) else 0
            value = {"name": dag, "status": status, "outputs": outputs}
            return StepResult(exit_code=code, output=json.dumps(value, ensure_ascii=False), outputs=outputs,
                              error=None if code == 0 else f"sub-DAG {dag!r} ended {status}",
                              children=[[dag, self._base]])
        items = self._call.items
        results, all_outputs, failed = [], [], 0
        for index, item in enumerate(items):
            status, outputs = self._child(self._run_id(index))
            failed += self._failed(index, status)
            results.append({"item": item, "status": status, "outputs": outputs})
            all_outputs.append(outputs)
        summary = {"total": len(items), "succeeded": len(items) - failed, "failed": failed}
        value = {"summary": summary, "results": results, "outputs": all_outputs}
        return StepResult(exit_code=1 if failed else 0, output=json.dumps(value, ensure_ascii=False),
                          outputs={"summary": summary, "results": results, "items": all_outputs},
                          children=[[dag, self._run_id(i)] for i in range(len(items))],
                          error=f"{failed} of {len(items)} runs of {dag!r} failed" if failed else None)


def make_job(request: StepRequest) -> CallJob:
    return CallJob(request)
