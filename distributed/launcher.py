"""The remote launcher: a run request goes to the broker, to the queue its `worker_selector` names.

`RoutingLauncher` sits where the local launcher sat (service/launching.py picks it when a broker
is configured): a START or START_QUEUED request of a DAG with a `worker_selector` (other than
`local`) becomes a message with the run's COMPILED PLAN in it, so a worker needs no DAG files;
every other request (no selector, `local`, resume after an approval, retry, restart, missed
ticks, sub-DAG runs, which the calling supervisor runs itself) is launched locally as before.

The Celery app is built on the first remote launch, so a scheduler with a broker configured and
no selector in any DAG never imports celery.
"""

from __future__ import annotations

import os
import time
from dataclasses import field
from typing import Any, Mapping

from dagu.spec.records import dataclass
from dagu.distributed.routing import queue_for, selector_of
from dagu.launch.base import START, START_QUEUED, LaunchedRun, Launcher, RunRequest
from dagu.spec.plan import PlanError, load_plan
from dagu.store.runs import Store
from dagu.store.state import RUN_FINAL, RunStatus, retry_pending

REMOTE_OPS = (START, START_QUEUED)
DEAD_GRACE_SEC = 3.0


@dataclass
class RemoteRun:
    """A run sent to the broker: `poll()` is None until the run's own records say it ended (it may
    wait in the broker for a matching worker for as long as it takes: that is not an error)."""

    home: str
    dag: str
    run_id: str
    queue: str
    sent_at: float = field(default_factory=time.time)

    dead_since: float | None = None

    def poll(self) -> int | None:
        if self.refusal() is not None:
            return 1
        status = self.status()
        return None if status is None else 0

    def refusal(self) -> str | None:
        """What the worker's supervisor said when it refused the run (no run folder was left:
        a bad param, the DAG at max_active_runs), else None."""
        from dagu.distributed.records import read_end

        end = read_end(self.home, self.dag, self.run_id)
        if end is None or os.path.isdir(Store(self.home).run(self.dag, self.run_id).path):
            return None
        return str(end.get("output") or "").strip() or f"its supervisor exited {end.get('exit')}"

    def status(self) -> RunStatus | None:
        """The run's status once it has ended, else None.  A run whose folder was just created
        reads as dead until its supervisor takes the lock a moment later: a reader's "dead" counts
        only once it has lasted DEAD_GRACE_SEC (a lost worker's run is recorded failed by the
        sweep well before that matters)."""
        run = Store(self.home).run(self.dag, self.run_id)
        if not os.path.isdir(run.path):
            return None
        view = run.read()
        if view.status.status not in RUN_FINAL:
            return None
        if retry_pending(view.status):
            return None  # a lost worker's run waits for its retry (distributed/retries.py)
        if not view.dead:
            return view.status
        now = time.monotonic()
        self.dead_since = self.dead_since or now
        return view.status if now - self.dead_since >= DEAD_GRACE_SEC else None


def message_for(home: str, request: RunRequest, plan_text: str) -> dict[str, Any]:
    """The whole unit of work, plain JSON: what to run and its plan."""
    return {"op": request.op, "dag": request.dag, "run_id": request.run_id, "params": list(request.params),
            "parent": request.parent, "env": [list(p) for p in request.env], "plan": plan_text,
            "sent_at": time.time()}


class RemoteLauncher:
    """Sends runs to the broker; builds the Celery app on first use."""

    def __init__(self, home: str, broker: str, environ: Mapping[str, str]) -> None:
        self.home = home
        self.broker = broker
        self.environ = dict(environ)
        self._app: Any = None

    def app(self) -> Any:
        if self._app is None:
            from dagu.distributed.app import make_app

            self._app = make_app(self.broker, self.environ)
        return self._app

    def send(self, request: RunRequest, queue: str, plan_text: str) -> RemoteRun:
        from dagu.distributed.app import send

        send(self.app(), queue, {**message_for(self.home, request, plan_text), "queue": queue})
        return RemoteRun(self.home, request.dag, request.run_id, queue)

    def close(self) -> None:
        if self._app is not None:
            self._app.close()
            self._app = None


class RoutingLauncher:
    """The Launcher the service uses with a broker: each request locally or to the broker."""

    def __init__(self, local: Launcher, home: str, broker: str, environ: Mapping[str, str]) -> None:
        self.local = local
        self.home = home
        self.remote = RemoteLauncher(home, broker, environ)

    def route(self, request: RunRequest) -> tuple[str, str] | None:
        """(queue, plan text) when the request goes to a worker, else None."""
        if request.op not in REMOTE_OPS or request.parent is not None:
            return None
        if request.op == START:
            if request.plan_path is None:
                return None
            path = request.plan_path
        else:
            path = Store(self.home).run(request.dag, request.run_id).plan
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
            dag = load_plan(path).dags.get(request.dag)
        except (OSError, PlanError):
            return None  # the local supervisor reports what is wrong with it, as without a broker
        selector = selector_of(dag.settings if dag is not None else None)
        if selector is None:
            return None
        return queue_for(selector), text

    def launch(self, request: RunRequest) -> LaunchedRun:
        routed = self.route(request)
        if routed is None:
            return self.local.launch(request)
        queue, text = routed
        return self.remote.send(request, queue, text)

    def argv(self, request: RunRequest) -> list[str]:
        return self.local.argv(request)

    def stop(self, pid: int) -> bool:
        """Shared data dir on one host: the ordinary stop by the run's recorded pid reaches a
        worker's supervisor like a local one (spec/distributed.md)."""
        return self.local.stop(pid)

    def close(self) -> None:
        self.remote.close()
        close = getattr(self.local, "close", None)
        if close is not None:
            close()
