"""Start, retry and stop runs: the glue between the CLI, the store and the supervisor.

Order matters for "loses nothing": params and the environment are evaluated
before a run directory exists (a refused run leaves no half-made run behind),
the run's plan is written before its first event, and the run's lock is taken
before its journal is opened.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import field
from collections.abc import Mapping, Sequence

from dagu.spec.records import dataclass
from dagu.engine.evaluate import EvalError
from dagu.engine.params import ParamError
from dagu.store.state import ABORTED, FAILED, PARTIAL, SUCCEEDED, RunStatus
from dagu.store.runs import DiskFullError, Journal, RunDir, Store, StoreError
from dagu.store.space import SpaceReserve, SpaceWatch
from dagu.store.state import apply
from dagu.engine.hooks import RunHook
from dagu.engine.leftovers import reap_dead_runs
from dagu.process.tree import attempt_leaders, reap_run
from dagu.engine.run_context import RunContext, build_context
from dagu.engine.supervisor import Supervisor
from dagu.startup import set_up
from dagu.spec.plan import Dag, Plan, dump_plan


class RunRefused(Exception):
    """The run cannot start (bad params, busy DAG, unknown run id, ...); nothing was executed."""


@dataclass
class Outcome:
    status: RunStatus
    run: RunDir
    problems: list[str]
    notes: list[str] = field(default_factory=list)  # what housekeeping did (retention), for stderr

    @property
    def exit_code(self) -> int:
        return exit_code_of(self.status)


def new_run_id() -> str:
    """Sortable by start time, unique without coordination: 20261124T101500Z-1a2b3c4d."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + os.urandom(4).hex()  # uuid4 costs 2 ms of imports


def exit_code_of(status: RunStatus) -> int:
    """0 for success, partial success, a run waiting for approval and a run its precondition
    skipped; 1 otherwise."""
    if status.status in (SUCCEEDED, PARTIAL, "waiting"):
        return 0
    if status.status == ABORTED and (status.error or "").startswith("DAG precondition not met"):
        return 0
    return 1


def start(plan: Plan, dag_name: str | None, words: list[str], run_id: str | None, home: str,
          environ: Mapping[str, str], parent: str | None = None, plan_text: str | None = None,
          hooks: Sequence[RunHook] = (), missed: str | None = None) -> Outcome:
    """Run one DAG of a plan in this process until it ends; `hooks` see every event.

    With `missed` (why), no step runs: the run records scheduled ticks that were not run,
    with status missed, and runs the DAG's failure and exit handlers so someone hears of it.
    """
    store = Store(home)
    dag = plan.dags.get(dag_name or plan.root)
    if dag is None:
        raise RunRefused(f"DAG {dag_name!r} is not in this plan (it has: {', '.join(sorted(plan.dags))})")
    run_id = run_id or new_run_id()
    try:
        ctx = build_context(plan, "", dag, None, run_id, words, home, environ, parent)
    except (ParamError, EvalError) as exc:
        raise RunRefused(f"{dag.file}: {exc}") from None
    text = plan_text if plan_text is not None else dump_plan(plan)
    try:
        run = store.create(dag.name, run_id, text)
    except StoreError as exc:
        raise RunRefused(str(exc)) from None
    ctx.missed = missed
    slot = None
    if parent is None and missed is None:  # called DAGs run under their caller's slot
        reap_dead_runs(store, dag.name)  # a dead supervisor's steps must not overlap this run
        slot = store.take_slot(dag.name, dag.max_active_runs, run)
        if slot is None:
            store.remove(run)
            active = ", ".join(r.run_id for r in store.active_runs(dag.name)) or "?"
            raise RunRefused(f"DAG {dag.name!r} already has {dag.max_active_runs} active run(s) ({active}); "
                             "max_active_runs allows no more: wait, `dagu stop` it, or raise max_active_runs")
    ctx.run = run
    ctx.plan_path = run.plan
    outcome = None
    try:
        outcome = _supervise(ctx, RunStatus(dag=dag.name, run_id=run_id, parent=parent), run, hooks=hooks)
    except DiskFullError:
        if parent is None:  # make room for the next run before reporting this one
            _housekeep(store, dag, run_id, environ)
        raise
    finally:
        if slot is not None:
            slot.release(finished=outcome is not None)  # supervised to the end: no process is left
    return _retain(store, dag, run_id, environ, outcome) if parent is None else outcome


def start_queued(dag_name: str, run_id: str, home: str, environ: Mapping[str, str],
                 hooks: Sequence[RunHook] = ()) -> Outcome:
    """Start a run that `dagu enqueue` recorded: same directory, plan and params."""
    from dagu.queues.queue import queued_words
    from dagu.store.state import QUEUED
    from dagu.spec.plan import PlanError, load_plan

    store = Store(home)
    run = store.run(dag_name, run_id)
    view = run.read()
    if view.status.status != QUEUED:
        raise RunRefused(f"run {run_id!r} of {dag_name!r} is {view.status.status}, not queued")
    try:
        plan = load_plan(run.plan)
    except PlanError as exc:
        raise RunRefused(f"cannot start the queued run: {exc}") from None
    dag = plan.dags[dag_name]
    try:
        ctx = build_context(plan, run.plan, dag, run, run_id, queued_words(run), home, environ)
    except (ParamError, EvalError) as exc:
        _refuse_queued(run, view.status, f"{dag.file}: {exc}")
        raise RunRefused(f"{dag.file}: {exc}") from None
    reap_dead_runs(store, dag.name)
    slot = store.take_slot(dag.name, dag.max_active_runs, run)
    if slot is None:
        raise RunRefused(f"DAG {dag.name!r} is at max_active_runs={dag.max_active_runs}; the run stays queued")
    outcome = None
    try:
        outcome = _supervise(ctx, view.status, run, hooks=hooks)
    finally:
        slot.release(finished=outcome is not None)
    return _retain(store, dag, run_id, environ, outcome)


def find_run(store: Store, run_id: str, dag_name: str | None = None) -> RunDir:
    """A run by its id alone (ids are unique in practice), or by DAG name and id."""
    dags = [dag_name] if dag_name else store.dag_names()
    found = [store.run(d, run_id) for d in dags if os.path.isdir(store.run(d, run_id).path)]
    if not found:
        raise RunRefused(f"no run {run_id!r} under {store.runs}")
    if len(found) > 1:
        raise RunRefused(f"run id {run_id!r} exists for several DAGs ({', '.join(sorted(os.path.basename(os.path.dirname(r.path)) for r in found))}); "
                         "name the DAG with --dag")
    return found[0]


APPROVE, REJECT, PUSH_BACK = "approve", "reject", "push_back"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def record_decision(run_id: str, step_id: str, decision: str, inputs: Mapping[str, str], reason: str | None,
                    by: str, home: str, dag_name: str | None = None) -> RunDir:
    """Approve, reject or push back a waiting step: check it, write the decision to the run's
    journal, and return the run.  Nothing runs here: the run continues in its own supervisor
    process (`resume`, launched by the service), never in the approver's.

    A push-back makes the step's `approval.rewind_to` step (default: the step itself) and
    everything downstream of it run again, with the approver's inputs as feedback, and the
    run waits at the approval again: review until it is right, in one run with one history.
    """
    from dagu.store.state import WAITING
    from dagu.spec.plan import PlanError, load_plan

    store = Store(home)
    run = find_run(store, run_id, dag_name)
    view = run.read()
    state = view.status.steps.get(step_id)
    if view.status.status != WAITING or state is None or state.status != WAITING:
        waiting = [s.id for s in view.status.steps.values() if s.status == WAITING]
        raise RunRefused(f"step {step_id!r} of run {run_id!r} is not waiting for approval"
                         + (f" (waiting: {', '.join(waiting)})" if waiting else f" (the run is {view.status.status})"))
    try:
        plan = load_plan(run.plan)
    except PlanError as exc:
        raise RunRefused(str(exc)) from None
    dag = plan.dags[view.status.dag]
    step = next(s for s in dag.steps if s.id == step_id)
    rule = step.options.get("approval") or {}
    event: dict = {"ev": {APPROVE: "approved", REJECT: "rejected", PUSH_BACK: "pushed_back"}[decision],
                   "at": time.time(), "step": step_id, "by": by}
    if decision == APPROVE:
        _check_approval_inputs(rule, inputs, run_id, step_id)
        event["inputs"] = dict(inputs)
    elif decision == PUSH_BACK:
        bad = [k for k in inputs if not _ENV_NAME.fullmatch(k)]
        if bad:
            raise RunRefused(f"push-back input {', '.join(map(repr, bad))} is not a variable name "
                             "(letters, digits and _, not starting with a digit)")
        target = rule.get("rewind_to") or step_id
        event.update(inputs=dict(inputs), rewind_to=target, reset=rewound_steps(dag, target),
                     iteration=int((view.status.pushback or {}).get("iteration", 0)) + 1)
    if reason:
        event["reason"] = reason
    if not run.acquire():
        raise RunRefused(f"run {run_id!r} is locked by another process ({run.lock})")
    try:
        current = run.read()  # under the lock: a second approver of the same step loses here
        if current.status.seq != view.status.seq:
            raise RunRefused(f"run {run_id!r} changed while the decision was made; look again")
        journal = Journal(run.journal, view.status.seq)
        journal.add(event)
        journal.close()
    finally:
        run.release()
    return run


def resume(dag_name: str, run_id: str, home: str, environ: Mapping[str, str],
           hooks: Sequence[RunHook] = ()) -> Outcome:
    """Continue a run after an approval decision, in this process (the run's new supervisor):
    the steps that have not run yet run; finished ones keep their results."""
    from dagu.store.state import WAITING
    from dagu.spec.plan import PlanError, load_plan

    store = Store(home)
    run = store.run(dag_name, run_id)
    if not os.path.isdir(run.path):
        raise RunRefused(f"no run {run_id!r} of DAG {dag_name!r} under {store.runs}")
    status = run.read().status
    if status.status != WAITING:
        raise RunRefused(f"run {run_id!r} of {dag_name!r} is {status.status}, not waiting to resume")
    try:
        plan = load_plan(run.plan)
    except PlanError as exc:
        raise RunRefused(str(exc)) from None
    dag = plan.dags[status.dag]
    try:
        ctx = build_context(plan, run.plan, dag, run, run_id, [], home, environ, status.parent, retry_of=status)
    except (ParamError, EvalError) as exc:
        raise RunRefused(f"{dag.file}: {exc}") from None
    ctx.resume = True
    outcome = _supervise(ctx, status, run, hooks=hooks)
    return _retain(store, dag, run_id, environ, outcome) if status.parent is None else outcome


def _check_approval_inputs(rule: Mapping, inputs: Mapping[str, str], run_id: str, step_id: str) -> None:
    allowed = list(rule.get("input") or [])
    unknown = [k for k in inputs if allowed and k not in allowed]
    if unknown:
        raise RunRefused(f"input {', '.join(unknown)} is not among the step's approval inputs ({', '.join(allowed)})")
    missing = [k for k in rule.get("required") or [] if not inputs.get(k)]
    if missing:
        raise RunRefused(f"approval of {step_id!r} requires input {', '.join(missing)}: "
                         f"dagu approve {run_id} {step_id} " + " ".join(f"-i {k}=..." for k in missing))


def rewound_steps(dag: Dag, target: str) -> list[str]:
    """`target` and every step downstream of it, in the DAG's order: what a push-back runs again."""
    dependents: dict[str, list[str]] = {}
    for s in dag.steps:
        for d in s.depends:
            dependents.setdefault(d, []).append(s.id)
    seen = {target}
    todo = [target]
    while todo:
        for nxt in dependents.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return [sid for sid in dag.order if sid in seen]


def _retain(store: Store, dag: Dag, run_id: str, environ: Mapping[str, str], outcome: Outcome) -> Outcome:
    """History retention after a top-level run; what it removed goes to `outcome.notes`, what
    went wrong to `outcome.problems`."""
    notes, problems = _housekeep(store, dag, run_id, environ)
    outcome.notes += notes
    outcome.problems += problems
    return outcome


def _housekeep(store: Store, dag: Dag, run_id: str, environ: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """store/retention.py for this DAG and the data dir; never raises, so it never fails a run."""
    from dagu.store.retention import after_run

    try:
        report = after_run(store, dag.name, run_id, dag.hist_retention_days, dag.hist_retention_runs, environ)
    except Exception as exc:  # a bug in housekeeping must not turn a finished run into a failure
        return [], [f"history retention failed: {type(exc).__name__}: {exc}"]
    summary = report.summary(store.home)
    return [summary] if summary else [], report.problems


def _refuse_queued(run: RunDir, status: RunStatus, why: str) -> None:
    journal = Journal(run.journal, status.seq)
    journal.add({"ev": "run_finished", "at": time.time(), "status": FAILED, "error": f"refused: {why}"})
    journal.close()
    run.write_snapshot(run.read().status)


def retry(dag_name: str, run_id: str, home: str, environ: Mapping[str, str],
          hooks: Sequence[RunHook] = (), step: str | None = None) -> Outcome:
    """Continue a finished or interrupted run: failed, aborted and unrun steps run again.

    With `step`, only that step runs again; every other step keeps its recorded result
    (steps that never ran stay unrun).  A dead supervisor's run is recorded as interrupted
    first: retry owns the run's liveness from here on."""
    from dagu.spec.plan import PlanError, load_plan

    store = Store(home)
    run = store.run(dag_name, run_id)
    if not os.path.isdir(run.path):
        raise RunRefused(f"no run {run_id!r} of DAG {dag_name!r} under {store.runs}")
    view = run.record_interruption()
    if view.live:
        raise RunRefused(f"run {run_id!r} is still running (its supervisor holds {run.lock}); stop it first")
    try:
        plan = load_plan(run.plan)
    except PlanError as exc:
        raise RunRefused(f"cannot retry: {exc}") from None
    dag = plan.dags.get(dag_name) or plan.main
    previous = view.status
    if step is not None and step not in previous.steps:
        raise RunRefused(f"run {run_id!r} has no step {step!r} (steps: {', '.join(previous.steps)})")
    reap_run(run.path, attempt_leaders(previous))  # a dead supervisor's steps must not run twice
    try:
        ctx = build_context(plan, run.plan, dag, run, run_id, [], home, environ, previous.parent,
                            retry_of=previous if step is None else only_step(previous, step))
    except (ParamError, EvalError) as exc:
        raise RunRefused(f"{dag.file}: {exc}") from None
    ctx.resume = step is not None  # keep every other step's result, failed ones too
    slot = None
    if previous.parent is None:
        slot = store.take_slot(dag.name, dag.max_active_runs, run)
        if slot is None:
            raise RunRefused(f"DAG {dag.name!r} has max_active_runs={dag.max_active_runs} active runs; retry later")
    outcome = None
    try:
        outcome = _supervise(ctx, previous, run, problems=view.problems, hooks=hooks)
    finally:
        if slot is not None:
            slot.release(finished=outcome is not None)
    return _retain(store, dag, run_id, environ, outcome) if previous.parent is None else outcome


def only_step(previous: RunStatus, step: str) -> RunStatus:
    """What `retry --step` restores from: `step` back in line, every other step as it finished.

    The supervisor's resume keeps finished steps (failed ones too) and runs the rest; steps that
    never ran are presented as skipped here, so they stay unrun (the journal keeps them as they
    were: this copy only steers the restore)."""
    import copy

    from dagu.store.state import NOT_STARTED, SKIPPED

    shaped = copy.deepcopy(previous)
    for sid, state in shaped.steps.items():
        if sid == step:
            state.status = NOT_STARTED
        elif state.status not in (SUCCEEDED, SKIPPED, FAILED, ABORTED):
            state.status = SKIPPED
    return shaped


def _supervise(ctx: RunContext, status: RunStatus, run: RunDir, problems: list[str] | None = None,
               hooks: Sequence[RunHook] = ()) -> Outcome:
    if not run.acquire():
        raise RunRefused(f"run {run.run_id!r} is locked by a live supervisor ({run.lock})")
    reserve = SpaceReserve(run.path)
    try:
        journal = Journal(run.journal, status.seq, sync_behind=True)  # the next step need not wait for the disk
        supervisor = Supervisor(ctx, status, journal)
        for hook in hooks:
            supervisor.hooks.subscribe(hook)
        watch = SpaceWatch(run.path, lambda free: _disk_full(supervisor, journal, run, free)).start()
        set_up()  # everything the run needs is imported: back to the usual collector (dagu/startup.py)
        try:
            supervisor.run()
        except StoreError as exc:  # the disk is full or the data dir vanished
            supervisor.kill_everything()
            _record_failure(journal, status, run, reserve, exc)
            raise type(exc)(f"{exc}; once there is room again: dagu retry {status.dag} --run-id {run.run_id}") \
                from None
        finally:
            watch.stop()
        journal.close()
        return Outcome(status, run, problems or [])
    finally:
        reserve.release()
        run.release()


def _disk_full(supervisor: Supervisor, journal: Journal, run: RunDir, free: int) -> None:
    """From the space watch's thread: hold the journal, so the supervisor's next flush raises
    DiskFullError and the run stops, and wake the supervisor so that flush comes now."""
    journal.hold(DiskFullError(f"{run.path}: the disk is full ({free} bytes left), "
                               "so the run stops while it can still record why"))
    supervisor.wake()


RECORD_RETRY_SEC = 5.0  # how long the cause of a disk-full failure is kept trying to be written


def _record_failure(journal: Journal, status: RunStatus, run: RunDir, reserve: SpaceReserve,
                    exc: StoreError) -> None:
    """Write down why the run stopped: the steps that were running failed, the run failed, with the
    cause.  Kept in memory until a write succeeds: the reserve is freed for it, then a few tries."""
    cause = str(journal.error or exc)
    now = time.time()
    for table in (status.steps, status.handlers):
        for state in table.values():
            attempt = state.last
            if state.status == "running" and attempt is not None and attempt.finished_at is None:
                event = {"ev": "step_finished", "at": now, "step": state.id, "name": state.name,
                         "handler": state.handler, "attempt": attempt.number, "status": FAILED,
                         "reason": f"killed: {cause}", "error": cause}
                apply(status, journal.add(event))
    apply(status, journal.add({"ev": "run_finished", "at": now, "status": FAILED, "error": cause}))
    journal.release()
    reserve.release()
    deadline = time.monotonic() + RECORD_RETRY_SEC
    while True:
        try:
            journal.flush()
            break
        except StoreError:
            if time.monotonic() >= deadline:
                return  # the cause is printed by the caller; readers will report the run interrupted
            time.sleep(0.5)
    try:
        journal.close()
        run.write_snapshot(status)
    except StoreError:
        pass  # readers fold the journal, which has the whole story
