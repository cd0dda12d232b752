"""Distributed workers as the front ends see them: serve one (`dagu worker`), list them (`dagu
workers`, the web's Workers page), send a `dagu start` to one, and which worker ran a run.

celery is imported only by `serve_worker` and `start_remote` (through dagu.distributed.app);
listing workers reads their records in the shared data dir and needs no broker.
"""

from __future__ import annotations

import os
import time
from dataclasses import field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from dagu.spec.records import dataclass
from dagu.service import BadRequest, ServiceError

if TYPE_CHECKING:
    from dagu.spec.plan import Plan
    from dagu.store.state import RunStatus


@dataclass
class WorkerInfo:
    """One worker for a listing: health is ok, late, stopping, lost or stopped."""

    id: str
    host: str
    pid: int
    labels: dict[str, str]
    max_active_runs: int
    running: list[str]
    last_heartbeat: float
    health: str
    started_at: float
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def list_workers(home: str, now: float | None = None) -> list[WorkerInfo]:
    """Every worker that ever served this data dir, newest heartbeat first."""
    from dagu.distributed.records import read_workers

    out = [WorkerInfo(id=r.id, host=r.host, pid=r.pid, labels=dict(r.labels), max_active_runs=r.max_active_runs,
                      running=list(r.running), last_heartbeat=r.heartbeat_at, health=r.health(now),
                      started_at=r.started_at, reason=r.reason)
           for r in read_workers(home)]
    return sorted(out, key=lambda w: -w.last_heartbeat)


def worker_of(home: str, dag: str, run_id: str) -> str | None:
    """The id of the worker that took the run; None for a run started on this host."""
    from dagu.distributed.records import read_claim

    claim = read_claim(home, dag, run_id)
    return str(claim["worker"]) if claim and claim.get("worker") else None


def serve_worker(home: str, environ: Mapping[str, str], broker: str | None, labels: str, max_active_runs: int,
                 worker_id: str | None, log: Callable[[str], None] | None = None) -> int:
    """`dagu worker`: consume this worker's queues until SIGTERM (then finish the running runs)."""
    from dagu.distributed.app import ENV_BROKER, BrokerMissing
    from dagu.distributed.routing import RoutingError, parse_labels
    from dagu.distributed.worker import (ENV_HEARTBEAT, Worker, WorkerConfig, check_home, default_worker_id,
                                         stderr_log)
    from dagu.engine.run_context import self_argv
    from dagu.spec.names import BadName, check_dag_name

    broker = broker or environ.get(ENV_BROKER)
    if not broker:
        raise BadRequest(f"give the broker: --broker redis://HOST:6379/0 (or set {ENV_BROKER})")
    try:
        parsed = parse_labels(labels)
    except RoutingError as exc:
        raise BadRequest(f"--labels: {exc}") from None
    worker_id = worker_id or default_worker_id()
    try:
        check_dag_name(worker_id)  # the same rule: it names a file in the data dir
    except BadName as exc:
        raise BadRequest(f"--id: {exc}") from None
    heartbeat = float(environ.get(ENV_HEARTBEAT) or 0) or None
    config = WorkerConfig(home=home, broker=broker, labels=parsed, worker_id=worker_id,
                          max_active_runs=max_active_runs, self_argv=self_argv(), environ=dict(environ))
    if heartbeat:
        config.heartbeat_sec = heartbeat
    check_home(home)
    try:
        return Worker(config, log or stderr_log(worker_id)).serve()
    except BrokerMissing as exc:
        raise ServiceError(str(exc)) from None


def routes_remotely(environ: Mapping[str, str], plan: "Plan", dag: str | None = None) -> bool:
    """Whether `dagu start` of this plan's DAG goes to a worker: a broker is configured and the
    DAG has a worker_selector other than `local`."""
    from dagu.distributed.app import broker_url
    from dagu.distributed.routing import RoutingError, selector_of

    if not broker_url(environ):
        return False
    target = plan.dags.get(dag or plan.root)
    try:
        return target is not None and selector_of(target.settings) is not None
    except RoutingError as exc:
        raise ServiceError(str(exc)) from None


@dataclass
class Sent:
    """A run sent to the broker: which, and to which queue."""

    dag: str
    run_id: str
    queue: str
    sent_at: float = field(default_factory=time.time)


def start_remote(home: str, environ: Mapping[str, str], plan: "Plan", words: Sequence[str],
                 run_id: str | None = None, plan_text: str | None = None, dag: str | None = None,
                 parent: str | None = None, selector: Mapping[str, Any] | None = None) -> Sent:
    """Send a run of the plan's DAG (default: its main one) to the queue its worker_selector
    names, or `selector` (a call step's); return at once.  The run exists once a worker takes it
    (it may wait in the broker until one matches)."""
    from dagu.distributed.app import BrokerMissing, broker_url, safe_url
    from dagu.distributed.launcher import RemoteLauncher
    from dagu.distributed.routing import RoutingError, queue_for, selector_of
    from dagu.engine.runner import new_run_id
    from dagu.launch.base import START, RunRequest
    from dagu.spec.plan import dump_plan
    from dagu.store.runs import Store

    run_id = run_id or new_run_id()
    target = plan.dags.get(dag or plan.root)
    if target is None:
        raise ServiceError(f"DAG {dag!r} is not in this plan")
    if Store(home).exists(target.name, run_id):
        raise ServiceError(f"run id {run_id!r} of DAG {target.name!r} already exists; pick another id")
    try:
        queue = queue_for(selector if selector is not None else selector_of(target.settings) or {})
    except RoutingError as exc:
        raise ServiceError(str(exc)) from None
    launcher = RemoteLauncher(home, broker_url(environ) or "", environ)
    try:
        launcher.send(RunRequest(START, target.name, run_id, params=tuple(words), parent=parent), queue,
                      plan_text if plan_text is not None else dump_plan(plan))
    except BrokerMissing as exc:
        raise ServiceError(str(exc)) from None
    except Exception as exc:  # kombu's connection errors: name the broker, no traceback
        where = safe_url(broker_url(environ) or "")
        raise ServiceError(f"cannot send the run to the broker {where}: {exc} (is Redis running there? "
                           "DAGU_BROKER names it; unset it to run here)") from None
    finally:
        launcher.close()
    return Sent(target.name, run_id, queue)


def wait_remote(home: str, sent: Sent, poll_sec: float = 0.1,
                stop: Callable[[], bool] | None = None) -> "RunStatus | None":
    """Block until the sent run's own records say it ended (it may first wait for a worker);
    None when `stop()` said to give up first."""
    from dagu.distributed.launcher import RemoteRun

    handle = RemoteRun(home, sent.dag, sent.run_id, sent.queue)
    while stop is None or not stop():
        refused = handle.refusal()
        if refused is not None:
            worker = worker_of(home, sent.dag, sent.run_id) or "?"
            raise ServiceError(f"worker {worker} did not start run {sent.run_id}: {refused}")
        status = handle.status()
        if status is not None:
            return status
        time.sleep(poll_sec)
    return None


def stop_sent(home: str, environ: Mapping[str, str], sent: Sent, wait_sec: float = 10.0) -> bool:
    """Stop a sent run: the ordinary stop by its recorded pid once it runs.  A run still waiting in
    the broker cannot be taken back from it; it is refused when a worker takes it, because its
    claim is made here first.  True when something was stopped or refused."""
    from dagu.distributed.records import claim
    from dagu.service.control import stop_run
    from dagu.service.launching import run_launcher

    if claim(home, sent.dag, sent.run_id, "(stopped before it started)", "stop"):
        return True
    from dagu.distributed.launcher import RemoteRun

    launcher = run_launcher(home, environ)
    handle = RemoteRun(home, sent.dag, sent.run_id, sent.queue)
    deadline = time.monotonic() + wait_sec
    while time.monotonic() < deadline:  # claimed: its supervisor takes the run's lock in a moment
        try:
            stop_run(home, launcher, sent.dag, sent.run_id, wait_sec=max(0.0, deadline - time.monotonic()))
            return True
        except ServiceError:
            if handle.status() is not None or handle.refusal() is not None:
                return False
            time.sleep(0.1)
    return False
