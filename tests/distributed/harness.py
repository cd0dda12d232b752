"""A real redis-server and real `dagu worker` processes for the distributed tests, each started
as a child of the test and ended by its own pid (tests/servers.py).

Workers beat every 0.5 s here (DAGU_WORKER_HEARTBEAT_SEC), so a lost worker is found within
about 2.5 s instead of the default 25 s; everything else is the default configuration.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tests.servers import Server, free_port, need

DAGU = [sys.executable, "-m", "dagu"]
HEARTBEAT = "0.5"


def start_redis(tmp: Path) -> Server:
    port = free_port()
    return Server.start([need("redis-server"), "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                         "--appendonly", "no", "--dir", str(tmp)], port, tmp / "redis.log")


def wait_until(check: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout}s"
        time.sleep(0.05)


@dataclass
class Cluster:
    """One data dir shared by the workers and the test (the shared-data-dir mode), one broker db."""

    tmp: Path
    broker: str
    extra_env: dict[str, str] = field(default_factory=dict)
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)
    clients: list[subprocess.Popen] = field(default_factory=list)  # `dagu start`s waiting on a worker

    def __post_init__(self) -> None:
        self.home = self.tmp / "home"
        self.dir = self.tmp / "work"
        self.home.mkdir(exist_ok=True)
        self.dir.mkdir(exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGU_", "DAG_"))}
        self.env.update({"DAGU_HOME": str(self.home), "DAGU_BROKER": self.broker,
                         "DAGU_WORKER_HEARTBEAT_SEC": HEARTBEAT, **self.extra_env})

    # -- files and commands ---------------------------------------------------------

    def write(self, name: str, text: str) -> Path:
        path = self.dir / name
        path.write_text(textwrap.dedent(text))
        return path

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([*DAGU, *args], cwd=self.dir, env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def popen(self, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen([*DAGU, *args], cwd=self.dir, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        self.clients.append(proc)
        return proc

    # -- workers ----------------------------------------------------------------------

    def worker(self, worker_id: str, labels: str = "", max_active_runs: int = 1,
               env: dict[str, str] | None = None) -> subprocess.Popen:
        """A `dagu worker`; `env` adds variables (DAGU_HOST_NAME: a worker on "another host")."""
        log = open(self.tmp / f"{worker_id}.stderr", "ab")
        proc = subprocess.Popen([*DAGU, "worker", "--labels", labels, "--id", worker_id,
                                 "--max-active-runs", str(max_active_runs)], cwd=self.dir,
                                env={**self.env, **(env or {})},
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.workers[worker_id] = proc
        wait_until(lambda: self.record(worker_id).get("pid") == proc.pid or proc.poll() is not None, 30,
                   f"worker {worker_id} started")
        assert proc.poll() is None, self.worker_log(worker_id)
        return proc

    def record(self, worker_id: str) -> dict:
        try:
            return json.loads((self.home / "distributed" / "workers" / f"{worker_id}.json").read_text())
        except (OSError, ValueError):
            return {}

    def worker_log(self, worker_id: str) -> str:
        path = self.tmp / f"{worker_id}.stderr"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill9(self, worker_id: str) -> None:
        proc = self.workers.pop(worker_id)
        os.kill(proc.pid, signal.SIGKILL)  # the worker only, as a crash would; its runs die with it
        proc.wait(10)

    def stop(self, worker_id: str) -> None:
        proc = self.workers.pop(worker_id)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)

    def close(self) -> None:
        for proc in self.clients:  # a failed test leaves no `dagu start` waiting for ever
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=10)
        for worker_id in list(self.workers):
            proc = self.workers.pop(worker_id)
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)

    # -- the runs' own records --------------------------------------------------------

    def run_dirs(self, dag: str) -> list[Path]:
        folder = self.home / "runs" / dag
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) if folder.exists() else []

    def journal(self, dag: str, run_id: str) -> list[dict]:
        path = self.home / "runs" / dag / run_id / "journal.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def status(self, dag: str, run_id: str) -> dict:
        res = self.run("status", dag, "--run-id", run_id, "--format", "json")
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)

    def final(self, dag: str, run_id: str, timeout: float = 30) -> dict:
        finals = ("succeeded", "failed", "aborted", "partial")

        def done() -> dict | None:
            if not (self.home / "runs" / dag / run_id).exists():
                return None
            status = self.status(dag, run_id)
            return status if status["status"] in finals else None

        return wait_until(done, timeout, f"run {dag}/{run_id} ended")  # type: ignore[return-value]

    def running(self, dag: str, run_id: str, step: str, timeout: float = 30) -> None:
        """Wait until the run's step has started (its own journal says so)."""
        wait_until(lambda: any(e["ev"] == "step_started" and e.get("step") == step for e in self.journal(dag, run_id)),
                   timeout, f"step {step} of {dag}/{run_id} started")

    def started_count(self, dag: str, run_id: str) -> int:
        return sum(1 for e in self.journal(dag, run_id) if e["ev"] == "run_started")
