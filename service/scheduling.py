"""What the scheduler and the queue dispatcher act through: the service's runs, by the launcher.

The scheduler (schedule/scheduler.py) decides; `SchedulerActions` carries the
decisions out.  It is handed to the scheduler (schedule/ never imports the
service), and every process it starts goes through one launcher, forked from
the zygote.
"""

from __future__ import annotations

import os
from typing import Callable, Mapping

from dagu.launch.base import MISSED, START, LaunchedRun, Launcher, RunRequest
from dagu.service import control, runs
from dagu.service.launching import run_launcher
from dagu.spec.plan import Plan
from dagu.store.runs import Store
from dagu.store.state import SUCCEEDED


class SchedulerActions:
    """The scheduler's hands: start, record missed ticks, stop, restart, queue, dispatch; and what it
    needs to know to decide (does a run exist, how many are active, the last success).  Runs
    just launched count as active until they end, because a new run may not hold its
    max_active_runs slot yet."""

    def __init__(self, store: Store, launcher: Launcher, log_path: str) -> None:
        self.store = store
        self.launcher = launcher
        self.log_path = log_path  # the launch log, rotated by the scheduler
        self.children: dict[str, tuple[LaunchedRun, str]] = {}  # run path -> (process, dag)
        self._dispatcher = None

    def _reap(self) -> None:
        for path, (proc, _dag) in list(self.children.items()):
            if proc.poll() is not None:
                del self.children[path]

    def exists(self, dag: str, run_id: str) -> bool:
        return os.path.isdir(self.store.run(dag, run_id).path)

    def active(self, dag: str) -> int:
        """Live runs of the DAG, counting those just launched that have not yet taken a slot."""
        self._reap()
        paths = {run.path for run in self.store.active_runs(dag)}
        paths |= {path for path, (_proc, d) in self.children.items() if d == dag}
        return len(paths)

    def active_ids(self, dag: str) -> list[str]:
        """The run ids of the DAG's live runs, for the reasons the scheduler records."""
        return sorted(run.run_id for run in self.store.active_runs(dag))

    def last_success(self, dag: str) -> float | None:
        """When the newest succeeded run of the DAG started.  Runs are read newest-written first
        and only until one succeeded: a DAG keeps thousands, and this is asked at every tick."""
        written = {}
        for run_id in self.store.run_ids(dag):
            try:
                written[run_id] = os.stat(self.store.run(dag, run_id).journal).st_mtime
            except OSError:
                written[run_id] = 0.0
        best = None
        for run_id in sorted(written, key=written.__getitem__, reverse=True):
            if best is not None and written[run_id] < best:
                break  # this run and all after it were last written before the best one started
            status = self.store.run(dag, run_id).read().status
            if status.status == SUCCEEDED and status.started_at is not None:
                best = max(best or 0.0, status.started_at)
        return best

    def start(self, plan: Plan, plan_path: str, run_id: str) -> None:
        proc = self.launcher.launch(RunRequest(START, plan.root, run_id, plan_path=plan_path))
        self.children[self.store.run(plan.root, run_id).path] = (proc, plan.root)

    def missed(self, plan: Plan, plan_path: str, run_id: str, why: str) -> None:
        """Record missed ticks as a run with status missed; its failure handlers notify."""
        self.launcher.launch(RunRequest(MISSED, plan.root, run_id, plan_path=plan_path, missed=why))

    def stop(self, dag: str) -> None:
        """Ask the DAG's active runs to stop; the scheduler does not wait for them."""
        control.stop_dag(self.store.home, self.launcher, dag, wait_sec=0)

    def restart(self, plan: Plan, plan_path: str, run_id: str) -> None:
        """`restart` (stop, then start with the latest params) in its own process."""
        detached = runs.restart_detached(self.launcher, plan, plan_path, run_id)
        if detached.process is not None:
            self.children[self.store.run(plan.root, run_id).path] = (detached.process, plan.root)

    def enqueue(self, plan: Plan, run_id: str, replace: bool = False) -> None:
        """Queue the run; with `replace`, first take out the DAG's runs the scheduler queued before."""
        from dagu.queues.queue import Queues

        queues = Queues(self.store)
        if replace:
            for item in queues.items():
                if item.dag == plan.root and item.run_id.startswith(plan.root + "-"):
                    queues.dequeue(item.dag, item.run_id)
        queues.enqueue(plan, None, [], run_id)

    def dispatch_queues(self) -> None:
        """One pass over the queues: start what may start, never wait.  The dispatcher lives as
        long as these actions, so runs it started count until they end."""
        from dagu.queues.queue import Dispatcher

        if self._dispatcher is None:
            self._dispatcher = Dispatcher(self.store, self.launcher)
        self._dispatcher.step()

    def repair(self, dag: str) -> None:
        """Record the runs whose supervisor died while no scheduler looked (the scheduler owns liveness)."""
        for run_id in self.store.run_ids(dag):
            run = self.store.run(dag, run_id)
            if run.read().dead:
                run.record_interruption()

    def close(self) -> None:
        close = getattr(self.launcher, "close", None)
        if close is not None:
            close()


def scheduler_actions(home: str, environ: Mapping[str, str]) -> SchedulerActions:
    """The actions of a scheduler of this data dir: the local launcher with its zygote (routing
    runs of DAGs with a worker_selector to workers when a broker is configured)."""
    log_path = os.path.join(home, "scheduler", "launch.log")
    return SchedulerActions(Store(home), run_launcher(home, environ, zygote=True, log_path=log_path), log_path)


def serve_scheduler(home: str, dags_dir: str, environ: Mapping[str, str], stop: Callable[[], bool],
                    log: Callable[[str], None]) -> int:
    """`dagu scheduler`: wait to lead, then schedule the directory's DAGs until `stop()`."""
    from dagu.schedule.scheduler import serve
    from dagu.service.dags import compile_for_scheduler

    actions = scheduler_actions(home, environ)
    try:
        return serve(home, dags_dir, compile_for_scheduler, actions, stop=stop, log=log)
    finally:
        actions.close()


def run_queues(home: str, environ: Mapping[str, str], once: bool, poll_sec: float) -> int:
    """`dagu queue run`: start queued runs in order; how many were started."""
    from dagu.queues.queue import dispatch

    launcher = run_launcher(home, environ)
    return dispatch(Store(home), launcher, once=once, poll_sec=poll_sec)
