"""Acting on runs that exist: stop one run or all of a DAG's, decide a waiting approval, resume.

An approval decision is recorded here and the run then continues in its own
supervisor process, launched detached: an approver's terminal or a web request
thread never becomes a supervisor.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Mapping

from dagu.spec.records import dataclass
from dagu.launch.base import RESUME, LaunchedRun, Launcher, RunRequest
from dagu.service import ServiceError
from dagu.store.runs import RunDir, Store
from dagu.store.state import RUN_FINAL

if TYPE_CHECKING:
    from dagu.engine.runner import Outcome

APPROVE, REJECT, PUSH_BACK = "approve", "reject", "push_back"
STOP_WAIT_SEC = 60.0


@dataclass
class Stopped:
    """A run asked to stop: whether it had ended by the time the caller stopped waiting."""

    dag: str
    run_id: str
    ended: bool


@dataclass
class Decision:
    """A recorded approval decision and the supervisor process that continues the run."""

    dag: str
    run_id: str
    step: str
    decision: str
    process: LaunchedRun


def _signal(launcher: Launcher, run: RunDir) -> bool:
    """SIGTERM to the run's supervisor by its pid when it runs on this host; on another host (a
    distributed worker's, in shared data dir mode) a stop request in the run's folder, which the
    worker supervising it acts on (distributed/stops.py): a pid means nothing there."""
    view = run.read()
    if not view.live or view.status.pid is None:
        return False
    from dagu.distributed.stops import is_remote, request_stop

    if is_remote(view.status.host):
        request_stop(run)
        return True
    return launcher.stop(view.status.pid)


def _wait_final(runs: list[RunDir], wait_sec: float) -> list[bool]:
    deadline = time.monotonic() + wait_sec
    ended = []
    for run in runs:
        while True:
            view = run.read()
            if view.status.status in RUN_FINAL or not view.live:
                ended.append(True)
                break
            if time.monotonic() >= deadline:
                ended.append(False)
                break
            time.sleep(0.05)
    return ended


def stop_run(home: str, launcher: Launcher, dag: str, run_id: str, wait_sec: float = STOP_WAIT_SEC) -> Stopped:
    """Stop one run by id (SIGTERM to its supervisor: steps get signal_on_stop, then SIGKILL);
    the DAG's other runs keep running.  Waits up to `wait_sec` for it to end."""
    store = Store(home)
    run = store.run(dag, run_id)
    view = run.read() if _exists(run) else None
    if view is None:
        raise ServiceError(f"no run {run_id!r} of {dag!r} under {store.runs}")
    if not view.live:
        raise ServiceError(f"run {run_id!r} of {dag!r} is not running (it is {view.status.status})")
    if not _signal(launcher, run):
        raise ServiceError(f"run {run_id!r} of {dag!r} ended before it could be stopped")
    [ended] = _wait_final([run], wait_sec) if wait_sec > 0 else [False]
    return Stopped(dag, run_id, ended)


def stop_dag(home: str, launcher: Launcher, dag: str, wait_sec: float = STOP_WAIT_SEC) -> list[Stopped]:
    """Stop every active run of a DAG; waits up to `wait_sec` for them to end (0: do not wait)."""
    signalled = [run for run in list(Store(home).active_runs(dag)) if _signal(launcher, run)]
    ended = _wait_final(signalled, wait_sec) if wait_sec > 0 else [False] * len(signalled)
    return [Stopped(dag, run.run_id, done) for run, done in zip(signalled, ended)]


def _exists(run: RunDir) -> bool:
    return os.path.isdir(run.path)


def decide(home: str, launcher: Launcher, run_id: str, step: str, decision: str, inputs: Mapping[str, str],
           reason: str | None, by: str, dag: str | None = None) -> Decision:
    """Approve, reject or push back a waiting step: record the decision, then launch the run's
    own supervisor to continue it (`resume`).  Returns once both are done, not when the run is."""
    from dagu.engine import runner

    if decision not in (APPROVE, REJECT, PUSH_BACK):
        raise ServiceError(f"unknown decision {decision!r}")
    try:
        run = runner.record_decision(run_id, step, decision, inputs, reason, by, home, dag_name=dag)
    except runner.RunRefused as exc:
        raise ServiceError(str(exc)) from None
    dag_name = run.read().status.dag
    process = launcher.launch(RunRequest(RESUME, dag_name, run_id))
    return Decision(dag_name, run_id, step, decision, process)


def resume(home: str, environ: Mapping[str, str], dag: str, run_id: str) -> "Outcome":
    """The supervisor side of a decision (`dagu resume DAG/RUN_ID`, hidden): continue the run here."""
    from dagu.engine import runner

    try:
        return runner.resume(dag, run_id, home, environ)
    except runner.RunRefused as exc:
        raise ServiceError(str(exc)) from None


def exit_code(status) -> int:
    """The exit code a run's status stands for (0: succeeded, partial, waiting, precondition unmet)."""
    from dagu.engine.runner import exit_code_of

    return exit_code_of(status)


def wait_for_process(process: LaunchedRun, poll_sec: float = 0.05) -> None:
    """Block until a launched supervisor has ended (`dagu approve --wait`)."""
    while process.poll() is None:
        time.sleep(poll_sec)
