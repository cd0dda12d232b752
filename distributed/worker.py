"""`dagu worker`: consume the queues of this worker's labels and supervise each run it takes.

Each run is the ordinary supervisor, spawned as `dagu start PLAN` (or `dagu start-queued`) with
the plan from the message, exactly as the local launcher spawns one: same logs, status,
accounting and sandbox, written into the shared data dir.  The worker only adds:

- a claim file per run (records.claim), taken before the supervisor starts: a message delivered
  twice starts one run;
- its record in `distributed/workers/<id>.json`, replaced each heartbeat and whenever a run
  starts or ends, so `dagu workers` and the other workers see it;
- the sweep of lost workers (records.sweep_lost), run by every live worker each heartbeat.

A supervisor dies with its worker (PR_SET_PDEATHSIG), as it would with the worker's host: the
sweep then records the run failed with the reason.  SIGTERM is Celery's warm shutdown: the
worker takes no new run and waits for the running ones to finish; a second SIGTERM/SIGINT is a
cold shutdown that ends them (they are recorded interrupted).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import field
from typing import Any, Callable, Mapping

from dagu.spec.records import dataclass
from dagu.distributed import records, retries, stops
from dagu.distributed.app import ENV_BROKER, TASK, make_app, safe_url
from dagu.distributed.routing import worker_queues
from dagu.launch.base import RETRY, START, START_QUEUED, RunRequest, request_argv
from dagu.store.runs import Store, hostname, write_atomic

ENV_WORKER_ID = "DAGU_WORKER_ID"
ENV_HEARTBEAT = "DAGU_WORKER_HEARTBEAT_SEC"


def _arm_pdeathsig() -> Callable[[], None] | None:
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def arm() -> None:
        prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the worker thread that spawned us

    return arm


@dataclass
class WorkerConfig:
    home: str
    broker: str
    labels: dict[str, str]
    worker_id: str
    max_active_runs: int
    self_argv: list[str]
    environ: dict[str, str]
    heartbeat_sec: float = records.DEFAULT_HEARTBEAT_SEC


def default_worker_id() -> str:
    return f"{hostname()}-{os.getpid()}"


@dataclass
class Worker:
    """One worker process: the task body, its record and its heartbeat."""

    config: WorkerConfig
    log: Callable[[str], None]
    record: records.WorkerRecord = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _arm: Callable[[], None] | None = field(default_factory=_arm_pdeathsig)
    _app: Any = None  # the Celery app, once serving: the heartbeat sends due retries through it

    def __post_init__(self) -> None:
        c = self.config
        now = time.time()
        self.record = records.WorkerRecord(id=c.worker_id, host=hostname(), pid=os.getpid(),
                                           labels=dict(c.labels), max_active_runs=c.max_active_runs,
                                           heartbeat_sec=c.heartbeat_sec, started_at=now, heartbeat_at=now)

    # -- the record ---------------------------------------------------------------

    def _write(self, **changes: Any) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(self.record, key, value)
            self.record.heartbeat_at = time.time()
            records.write_worker(self.config.home, self.record)

    def _running(self, key: str, add: bool) -> None:
        with self._lock:
            running = [k for k in self.record.running if k != key] + ([key] if add else [])
        self._write(running=running)

    def heartbeat(self) -> None:
        """Beat until stopped; each beat also sweeps workers that stopped beating."""
        while not self._stop.wait(self.config.heartbeat_sec):
            try:
                self._write()
                for note in records.sweep_lost(self.config.home, me=self.config.worker_id):
                    self.log(note)
                self._send_retries()
            except Exception as exc:  # noqa: BLE001 - a full disk must not end the heartbeat
                self.log(f"heartbeat: {type(exc).__name__}: {exc}")

    def _send_retries(self) -> None:
        """Send the lost runs' retries that are due (retries.py) through this worker's broker."""
        from dagu.distributed.app import send

        app = self._app
        if app is None:
            return
        for note in retries.send_due(self.config.home, lambda queue, message: send(app, queue, message)):
            self.log(note)

    # -- one run --------------------------------------------------------------------

    def take(self, message: dict[str, Any]) -> str:
        """The task body: claim the run, supervise it, return how it went (a word for the log)."""
        op, dag, run_id = message.get("op"), message.get("dag"), message.get("run_id")
        attempt = message.get("attempt") if op == RETRY else 0
        if op not in (START, START_QUEUED, RETRY) or not isinstance(dag, str) or not isinstance(run_id, str) \
                or not isinstance(attempt, int) or (op == RETRY and attempt < 1):
            self.log(f"dropped a message that is not a run: {str(message)[:200]}")
            return "refused"
        key = f"{dag}/{run_id}"
        home = self.config.home
        mine = key in self.record.running  # delivered again to this very worker while it runs it
        if not mine:
            self._running(key, add=True)  # first: a sweep after a crash must find the claim's run
        try:
            if op == START:  # before the claim: a sweep can then record a run lost in between
                plan = records.plan_path(home, dag, run_id)
                if not os.path.exists(plan):
                    write_atomic(plan, str(message.get("plan") or ""), make_dirs=True)
            extra = {"queue": message.get("queue"), "env": message.get("env") or []}
            if not records.claim(home, dag, run_id, self.config.worker_id, op, attempt, extra):
                owner = (records.read_claim(home, dag, run_id) or {}).get("worker", "?")
                self.log(f"run {key}: delivered again, already taken by worker {owner}: dropped")
                return "duplicate"
            if op == RETRY and not retries.is_current(Store(home).run(dag, run_id), attempt):
                self.log(f"run {key}: retry {attempt} is not the one its records wait for: dropped")
                return "stale"
            if op == START:
                request = RunRequest(START, dag, run_id, plan_path=plan, params=tuple(message.get("params") or ()),
                                     parent=message.get("parent"))
            elif op == RETRY:  # a lost worker's run, resumed as `dagu retry` does (retries.py)
                request = RunRequest(RETRY, dag, run_id)
            else:
                request = RunRequest(START_QUEUED, dag, run_id)
            code, tail = self._supervise(request, message)
            self.log(f"run {key}: supervisor exited {code}")
            if op == RETRY:
                retries.record_refused(Store(home).run(dag, run_id), attempt,
                                       tail.strip() or f"its supervisor exited {code}")
            return "done"
        finally:
            if not mine:
                self._running(key, add=False)

    def _supervise(self, request: RunRequest, message: dict[str, Any]) -> tuple[int, str]:
        """Run the supervisor to its end: its exit code and the tail of what it said."""
        env = {k: v for k, v in self.config.environ.items() if k != ENV_BROKER}  # the run is local here
        env.update({k: v for k, v in (message.get("env") or [])})
        env.update({"DAGU_HOME": self.config.home, ENV_WORKER_ID: self.config.worker_id})
        run = Store(self.config.home).run(request.dag, request.run_id)
        stops.clear(run)  # a request left from an earlier supervisor of this run is not for this one
        proc = subprocess.Popen(request_argv(self.config.self_argv, request), env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                                close_fds=True, preexec_fn=self._arm)
        self.log(f"run {request.dag}/{request.run_id}: supervisor pid {proc.pid}")
        assert proc.stdout is not None
        ended = threading.Event()
        watch = threading.Thread(target=self._watch_stop, args=(proc, run, request.dag, ended),
                                 name=f"dagu-stop-{request.run_id}", daemon=True)
        watch.start()
        tail = b""
        for chunk in iter(lambda: proc.stdout.read1(65536), b""):  # type: ignore[union-attr]
            tail = (tail + chunk)[-4096:]  # the supervisor says little (-q): its refusal, if any
            with open(records.worker_log(self.config.home, self.config.worker_id), "ab") as out:
                out.write(chunk)
        proc.stdout.close()
        code = proc.wait()
        ended.set()
        watch.join()
        stops.clear(run)
        text = tail.decode("utf-8", "replace")
        if request.op != RETRY:  # a retry's refusal goes into the run's records (retries.record_refused)
            records.write_end(self.config.home, request.dag, request.run_id, code, text)
        return code, text

    def _watch_stop(self, proc: subprocess.Popen, run: Any, dag: str, ended: threading.Event) -> None:
        """Poll the run's folder for a stop request (`dagu stop` from any host, stops.py) until the
        supervisor ends; on one, stop it as a local stop would: SIGTERM, and SIGKILL if it is still
        there after the DAG's grace period and a margin."""
        while not ended.wait(stops.STOP_POLL_SEC):
            request = stops.read_request(run)
            if request is None:
                continue
            self.log(f"run {dag}/{run.run_id}: stop requested by {request.get('by', '?')} on "
                     f"{request.get('host', '?')}: SIGTERM to its supervisor (pid {proc.pid})")
            proc.send_signal(signal.SIGTERM)
            limit = stops.grace_of(run, dag) + stops.KILL_MARGIN_SEC
            if not ended.wait(limit):
                self.log(f"run {dag}/{run.run_id}: supervisor still running {limit:g} s after the stop: SIGKILL")
                proc.kill()
            return

    # -- the process ------------------------------------------------------------------

    def serve(self) -> int:
        """Consume until a shutdown signal; returns the exit code."""
        c = self.config
        queues = worker_queues(c.labels)
        app = make_app(c.broker, c.environ)
        app.task(name=TASK, ignore_result=True, acks_late=False)(self.take)
        self._app = app
        for note in self._previous_runs():
            self.log(note)
        self._write(state=records.RUNNING)
        for note in records.sweep_lost(c.home, me=c.worker_id):
            self.log(note)
        beat = threading.Thread(target=self.heartbeat, name="dagu-heartbeat", daemon=True)
        beat.start()
        self.log(f"worker {c.worker_id}: labels {_labels(c.labels)}, {len(queues)} queue(s), "
                 f"{c.max_active_runs} run(s) at a time, broker {safe_url(c.broker)}, data {c.home}")
        worker = app.Worker(hostname=f"{c.worker_id}@{hostname()}", queues=queues,
                            concurrency=c.max_active_runs, pool="threads", loglevel="WARNING",
                            without_mingle=True, without_gossip=True, optimization="fair", quiet=True)
        try:
            worker.start()
        finally:
            self._stop.set()
            self._write(state=records.STOPPED, running=[])
            self.log(f"worker {c.worker_id}: stopped")
        return int(getattr(worker, "exitcode", 0) or 0)


    def _previous_runs(self) -> list[str]:
        """A worker restarted under the same id: the runs its previous process held died with it
        (PR_SET_PDEATHSIG) and nobody swept them, since its record is about to be replaced."""
        old = records.read_worker(records.worker_path(self.config.home, self.config.worker_id))
        if old is None or old.state in (records.STOPPED, records.LOST) or not old.running:
            return []
        reason = f"worker {old.id} on {old.host} was restarted (pid {old.pid} -> {os.getpid()}) while the run ran"
        notes = []
        for key in old.running:
            dag, _, run_id = key.partition("/")
            owner = records.read_claim(self.config.home, dag, run_id)
            if owner is None or owner.get("worker") == old.id:
                note = records.fail_lost_run(self.config.home, dag, run_id, reason)
                if note:
                    notes.append(note)
        return notes


def _labels(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "(none: only the any queue)"


def stderr_log(worker_id: str) -> Callable[[str], None]:
    def log(line: str) -> None:
        sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} dagu worker {worker_id}: {line}\n")
        sys.stderr.flush()

    return log


def check_home(home: str) -> None:
    """The data dir must exist and be writable before the worker takes anything."""
    os.makedirs(records.base(home), exist_ok=True)
    Store(home)
