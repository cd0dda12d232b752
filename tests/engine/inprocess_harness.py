"""Run one DAG of a plan with a test-only in-process executor standing in for `noop`.

Usage: python inprocess_harness.py PLAN DAG RUN_ID BEHAVIOUR (DAGU_HOME from the environment).
The supervisor is the real one, in its own process (so signals and exit are real);
only its catalogue lookup is swapped, as the engine allows by construction.
"""

from __future__ import annotations

import json
import os
import sys
import types

from dagu.engine.run_context import build_context
from dagu.engine.step_types import Executor, load_executor
from dagu.engine.supervisor import Supervisor
from dagu.executors import catalog
from dagu.executors.base import Cancellation, StepIO, StepRequest, StepResult
from dagu.spec.plan import load_plan
from dagu.store.runs import Journal, Store
from dagu.store.state import RunStatus


def chatty(request: StepRequest, io: StepIO, cancel: Cancellation) -> StepResult:
    """A line every 0.05 s until cancelled; the cancel callback leaves a mark (as a client would
    cancel a remote query)."""
    marker = os.path.join(request.cwd, "cancelled.txt")
    cancel.on_cancel(lambda: open(marker, "w").write("cancel callback ran\n"))
    for n in range(2000):
        io.out.write(f"line {n}\n")
        if cancel.wait(0.05):
            io.err.write("stopping on cancel\n")
            return StepResult(exit_code=1, error="cancelled")
    return StepResult(exit_code=0)


def stubborn(request: StepRequest, io: StepIO, cancel: Cancellation) -> StepResult:
    io.out.write("ignoring cancellation\n")
    threading_event = __import__("threading").Event()
    threading_event.wait(600)  # never looks at `cancel`
    return StepResult(exit_code=0)


def answer(request: StepRequest, io: StepIO, cancel: Cancellation) -> StepResult:
    io.out.write(f"config: {json.dumps(request.config, sort_keys=True)}\n")
    return StepResult(exit_code=0, output=json.dumps({"field": "v", "n": 3}))


def main() -> int:
    plan_path, dag_name, run_id, behaviour = sys.argv[1:5]
    home = os.environ["DAGU_HOME"]
    module = types.SimpleNamespace(run={"chatty": chatty, "stubborn": stubborn, "answer": answer}[behaviour])

    def lookup(type_name: str) -> Executor | None:
        if type_name == "noop":
            return Executor("noop", catalog.IN_PROCESS, module)
        return load_executor(type_name)

    plan = load_plan(plan_path)
    dag = plan.dags[dag_name]
    store = Store(home)
    run = store.create(dag.name, run_id, open(plan_path, encoding="utf-8").read())
    ctx = build_context(plan, run.plan, dag, run, run_id, [], home, dict(os.environ))
    status = RunStatus(dag=dag.name, run_id=run_id)
    assert run.acquire()
    journal = Journal(run.journal, status.seq)
    final = Supervisor(ctx, status, journal, executors=lookup).run()
    journal.close()
    run.release()
    print(final.status)
    return 0


if __name__ == "__main__":
    sys.exit(main())
