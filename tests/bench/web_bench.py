"""The web server's speed: a script, not a test (pytest does not collect it; it never asserts).

    python tests/bench/web_bench.py [--dags 100] [--runs 10000] [--quick] [--json OUT]
                                    [--upstream ~/.cache/dagu-bench/1.30.2/package/bin/dagu]
                                    [--only api,paint,rss,log,sse] [--keep DIR]

With 100 DAGs and 10,000 past runs it measures, against a real `dagu server` process:

| row | how | target |
| --- | --- | --- |
| `GET /api/v1/dags` | median of 50 requests on one keep-alive connection, after one warm-up | <= 10 ms |
| run page first paint | Debian chromium via Playwright, `first-contentful-paint` of /runs/DAG/RUN | < 300 ms |
| idle RSS | VmRSS of the server after start and after the warm-up requests | <= 60 MB |
| 1 GB log by range | 200 ranged reads (1 MiB) across a 1 GiB step log, then its tail: RSS growth | ~0 |
| 50 SSE clients | 50 streams for 60 s (10 s with --quick) while a run is written every 2 s: | nothing |
|   | change events each client got vs. the changes made; server CPU share | dropped, < 10 % |

The runs are written through the engine's own store writers (Store.create, Journal, apply,
RunDir.write_snapshot), with fsync turned off in this generator process only: realistic
folders (plan, journal, snapshot, logs) in seconds instead of 10,000 real supervisors.
Upstream 1.30.2 (`--upstream BIN`) gets the same 100 DAG files (its 1.x spelling) and no run
history (its history format is its own): its `GET /api/v1/dags` is timed the same way.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS = ("extract", "transform", "load")


def dag_yaml(i: int, legacy: bool = False) -> str:
    """A three-step chain with a schedule, tags and a param (1.x spelling for upstream)."""
    key = "name" if legacy else "id"
    lines = [f"description: benchmark DAG {i}", f"tags: [bench, group{i % 5}]", f'schedule: "{i % 60} * * * *"']
    lines += ["params: DAY=today"] if legacy else ["params:", "  - name: DAY", "    default: today"]
    lines.append("steps:")
    prev = None
    for step in STEPS:
        lines += [f"  - {key}: {step}", f"    command: echo {step} $DAY"]
        if prev:
            lines.append(f"    depends: [{prev}]" if legacy else f"    depends: {prev}")
        prev = step
    return "\n".join(lines) + "\n"


def generate(root: str, n_dags: int, n_runs: int) -> tuple[str, str]:
    """A DAGs folder and a data dir with `n_runs` finished runs spread over `n_dags` DAGs."""
    from dagu.service.dags import load_for_run
    from dagu.store.journal import Journal
    from dagu.store.runs import Store
    from dagu.store.state import RunStatus, apply

    home, dags = os.path.join(root, "home"), os.path.join(root, "dags")
    os.makedirs(home, exist_ok=True)
    os.makedirs(dags, exist_ok=True)
    real_fsync, real_fdatasync = os.fsync, os.fdatasync
    os.fsync = os.fdatasync = lambda fd: None  # this generator only: the data is throwaway
    try:
        store = Store(home)
        rng = random.Random(18)
        per_dag = max(1, n_runs // n_dags)
        base = time.time() - per_dag * 3600
        for i in range(n_dags):
            name = f"bench-{i:03d}"
            path = os.path.join(dags, f"{name}.yaml")
            with open(path, "w") as fh:
                fh.write(dag_yaml(i))
            loaded = load_for_run(path, home)
            assert loaded.plan is not None, loaded.diagnostics
            for r in range(per_dag):
                started = base + r * 3600 + rng.random() * 60
                run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started)) + f"-{i:04x}{r:04x}"
                _write_run(store, name, run_id, loaded.plan_text, started, rng, Journal, RunStatus, apply)
    finally:
        os.fsync, os.fdatasync = real_fsync, real_fdatasync
    return home, dags


def _write_run(store, dag, run_id, plan_text, started, rng, Journal, RunStatus, apply) -> None:
    run = store.create(dag, run_id, plan_text)
    journal = Journal(run.journal)
    status = RunStatus(dag=dag, run_id=run_id)
    final = "failed" if rng.random() < 0.1 else "succeeded"

    def add(event: dict[str, Any]) -> None:
        apply(status, journal.add(event))

    add({"ev": "run_started", "at": started, "pid": 4242, "host": "bench", "parent": None, "params": ["DAY=today"],
         "retry": False, "resume": False, "steps": [[s, s] for s in STEPS]})
    t = started
    for n, step in enumerate(STEPS):
        out, err = run.step_log(step, 1, "out"), run.step_log(step, 1, "err")
        with open(out, "w") as fh:
            fh.write(f"{step} today\n")
        open(err, "w").close()
        add({"ev": "step_started", "at": t, "step": step, "name": step, "handler": None, "attempt": 1,
             "stdout": out, "stderr": err, "pid": 4243 + n})
        took = 0.5 + rng.random() * (n + 1) * 2
        t += took
        failed = final == "failed" and step == STEPS[-1]
        add({"ev": "step_finished", "at": t, "step": step, "name": step, "handler": None, "attempt": 1,
             "status": "failed" if failed else "succeeded", "reason": None, "exit_code": 1 if failed else 0,
             "signal": None, "usage": {"wall_sec": took, "user_sec": took / 4, "sys_sec": 0.01,
                                        "peak_rss_bytes": 2_000_000, "read_bytes": 0, "write_bytes": 4096,
                                        "samples": 1}})
    add({"ev": "run_finished", "at": t, "status": final, "error": None})
    journal.flush()
    journal.close()
    run.write_snapshot(status)


# -- serving ----------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    log: Any = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_mb(self) -> float:
        return rss_mb(self.proc.pid)

    def cpu_sec(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def start_ours(dagu: list[str], home: str, dags: str, root: str) -> Server:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGU_")}
    env["DAGU_HOME"] = home
    log = open(os.path.join(root, "server-ours.log"), "ab")
    proc = subprocess.Popen([*dagu, "server", "--port", str(port), "--dags", dags], env=env, stdout=log,
                            stderr=log, stdin=subprocess.DEVNULL)
    wait_port(port, proc)
    return Server(proc, port, log)


def start_upstream(binary: str, root: str, n_dags: int) -> Server:
    home = os.path.join(root, "upstream-home")
    dags = os.path.join(home, "dags")
    os.makedirs(dags, exist_ok=True)
    for i in range(n_dags):
        with open(os.path.join(dags, f"bench-{i:03d}.yaml"), "w") as fh:
            fh.write(dag_yaml(i, legacy=True))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGU_")}
    env.update(DAGU_HOME=home, DAGU_DAGS_DIR=dags, DAGU_PORT=str(port), DAGU_HOST="127.0.0.1")
    log = open(os.path.join(root, "server-upstream.log"), "ab")
    proc = subprocess.Popen([binary, "server", "--port", str(port), "--host", "127.0.0.1", "--dags", dags],
                            env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    wait_port(port, proc)
    return Server(proc, port, log)


def get(conn: http.client.HTTPConnection, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    conn.request("GET", path, headers=headers or {})
    res = conn.getresponse()
    return res.status, res.read()


def time_get(port: int, path: str, n: int) -> dict[str, float]:
    """Median and p90 ms of `n` GETs of `path` on one keep-alive connection, after a warm-up."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    status, body = get(conn, path)
    if status != 200:
        raise RuntimeError(f"GET {path}: {status} {body[:200]!r}")
    times = []
    for _ in range(n):
        started = time.perf_counter()
        get(conn, path)
        times.append((time.perf_counter() - started) * 1000)
    conn.close()
    times.sort()
    return {"median_ms": statistics.median(times), "p90_ms": times[int(len(times) * 0.9) - 1],
            "bytes": len(body)}
