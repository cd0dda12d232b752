"""How the scheduler acts on runs: the one interface between its decisions and processes.

Every run is its own detached `dagu start -q PLAN --run-id ID` process (new
session, stdin from /dev/null, stderr appended to scheduler/launch.log), so a
crash of one run or of the scheduler leaves the others running.  Tests swap in
a fake with the same methods.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from typing import Mapping, Sequence

from dagu.runtime.queue import Dispatcher, Queues
from dagu.runtime.state import SUCCEEDED
from dagu.runtime.store import Store
from dagu.spec.plan import Plan


class ProcessLauncher:
    def __init__(self, store: Store, argv: Sequence[str], environ: Mapping[str, str]) -> None:
        self.store = store
        self.argv = list(argv)
        self.environ = dict(environ)
        self.children: dict[str, tuple[subprocess.Popen, str]] = {}  # run path -> (process, dag)
        self.log_path = os.path.join(store.home, "scheduler", "launch.log")
        self._dispatcher: Dispatcher | None = None

    def _spawn(self, argv: Sequence[str]) -> subprocess.Popen:
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        with open(self.log_path, "ab") as log:
            return subprocess.Popen(list(argv), env=self.environ, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=log, start_new_session=True, close_fds=True)

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
        """When the newest succeeded run of the DAG started."""
        for view in self.store.views(dag, repair=False):
            if view.status.status == SUCCEEDED and view.status.started_at is not None:
                return view.status.started_at
        return None

    def start(self, plan: Plan, plan_path: str, run_id: str) -> None:
        proc = self._spawn([*self.argv, "start", "-q", plan_path, "--run-id", run_id])
        self.children[self.store.run(plan.root, run_id).path] = (proc, plan.root)

    def missed(self, plan: Plan, plan_path: str, run_id: str, why: str) -> None:
        """Record missed ticks as a run with status missed; its failure handlers notify."""
        self._spawn([*self.argv, "start", "-q", plan_path, "--run-id", run_id, "--missed", why])

    def stop(self, dag: str) -> None:
        self._spawn([*self.argv, "stop", dag])

    def restart(self, plan: Plan, plan_path: str, run_id: str) -> None:
        """Stop the DAG's active runs, then start it again: one detached shell, both steps."""
        me = shlex.join(self.argv)
        script = (f"{me} stop {shlex.quote(plan.root)}; "
                  f"exec {me} start -q {shlex.quote(plan_path)} --run-id {shlex.quote(run_id)}")
        proc = self._spawn(["/bin/sh", "-c", script])
        self.children[self.store.run(plan.root, run_id).path] = (proc, plan.root)

    def enqueue(self, plan: Plan, run_id: str, replace: bool = False) -> None:
        """Queue the run; with `replace`, first take out the DAG's runs the scheduler queued before."""
        queues = Queues(self.store)
        if replace:
            for item in queues.items():
                if item.dag == plan.root and item.run_id.startswith(plan.root + "-"):
                    queues.dequeue(item.dag, item.run_id)
        queues.enqueue(plan, None, [], run_id)

    def dispatch_queues(self) -> None:
        """One pass over the queues: start what may start, never wait.  The dispatcher lives as
        long as the launcher, so runs it started count until they end."""
        if self._dispatcher is None:
            self._dispatcher = Dispatcher(self.store, self.argv, self.environ)
        self._dispatcher.step()
