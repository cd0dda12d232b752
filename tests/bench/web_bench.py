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


# -- the rows ---------------------------------------------------------------------------------------

def newest_run(home: str, dag: str) -> str:
    return sorted(os.listdir(os.path.join(home, "runs", dag)))[-1]


def first_paint(port: int, path: str, repeat: int) -> dict[str, float]:
    """first-contentful-paint (ms after navigation start) of `path` in a fresh browser context each time."""
    from playwright.sync_api import sync_playwright

    paints, loads = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                     args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            for _ in range(repeat + 1):  # the first warms the server's page path, not counted
                context = browser.new_context()
                page = context.new_page()
                page.goto(f"http://127.0.0.1:{port}{path}", wait_until="load")
                page.wait_for_function("performance.getEntriesByType('paint').length > 0", timeout=10000)
                entries = page.evaluate("Object.fromEntries(performance.getEntriesByType('paint')"
                                        ".map(e => [e.name, e.startTime]))")
                nav = page.evaluate("performance.getEntriesByType('navigation')[0].toJSON()")
                paints.append(entries.get("first-contentful-paint", entries.get("first-paint")))
                loads.append(nav["loadEventEnd"])
                context.close()
        finally:
            browser.close()
    paints, loads = paints[1:], loads[1:]
    return {"fcp_median_ms": statistics.median(paints), "fcp_max_ms": max(paints),
            "load_median_ms": statistics.median(loads)}


def big_log(server: Server, home: str, gib: float = 1.0, reads: int = 200) -> dict[str, float]:
    """A step log of `gib` GiB (sparse but for text at its start and end), read by range across
    its length and by tail: the server's RSS before and after."""
    dag = "bench-000"
    run_id = newest_run(home, dag)
    path = os.path.join(home, "runs", dag, run_id, "logs", "extract.1.out")
    size = int(gib * 1024 ** 3)
    with open(path, "wb") as fh:
        fh.write(b"extract today\n" * 1000)
        fh.truncate(size - 4096)
        fh.seek(size - 4096)
        fh.write((b"the end of a long log\n" * 200)[:4096])
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    base = f"/api/v1/runs/{dag}/{run_id}/steps/extract/log"
    get(conn, f"{base}?offset=0&limit=1048576&format=raw")
    before = server.rss_mb()
    peak = before
    served = 0
    started = time.perf_counter()
    for i in range(reads):
        offset = (size // reads) * i
        fmt = "&format=raw" if i % 2 else ""
        status, body = get(conn, f"{base}?offset={offset}&limit=1048576{fmt}")
        assert status == 200, body[:200]
        served += len(body)
        if i % 20 == 0:
            peak = max(peak, server.rss_mb())
    status, tail = get(conn, f"{base}?tail=65536")
    took = time.perf_counter() - started
    after = server.rss_mb()
    conn.close()
    return {"log_bytes": size, "reads": reads, "served_mb": served / 1024 ** 2, "seconds": took,
            "rss_before_mb": before, "rss_peak_mb": max(peak, after), "rss_after_mb": after,
            "tail_ok": float(b"the end of a long log" in tail)}


@dataclass
class SseClient:
    """One browser's event stream: counts `change` events naming the watched topic."""

    port: int
    topics: str
    changes: int = 0
    hellos: int = 0
    refused: int = 0
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            conn.request("GET", f"/api/v1/events?topics={self.topics}", headers={"Accept": "text/event-stream"})
            res = conn.getresponse()
            if res.status != 200:
                self.refused += 1
                return
            event = None
            while not self.stop.is_set():
                line = res.fp.readline()
                if not line:
                    self.errors.append("stream closed")
                    return
                line = line.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "change":
                    self.changes += 1
                elif line.startswith("data: ") and event == "hello":
                    self.hellos += 1
            conn.close()
        except OSError as exc:
            if not self.stop.is_set():
                self.errors.append(str(exc))


def sse(server: Server, home: str, clients: int, seconds: float, every: float = 2.0) -> dict[str, float]:
    """`clients` streams for `seconds`, half on the DAGs page's topic (`dags`: every DAG file and
    the newest runs of each), half on one run's; that run's journal changes every `every` s (what
    a running step does), which both topics show: each change must reach every client."""
    dag = "bench-001"
    run_id = newest_run(home, dag)
    journal = os.path.join(home, "runs", dag, run_id, "journal.jsonl")
    pool = [SseClient(server.port, "dags" if i % 2 else f"run:{dag}/{run_id}") for i in range(clients)]
    threads = [threading.Thread(target=c.run, daemon=True) for c in pool]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while sum(c.hellos + c.refused for c in pool) < clients and time.monotonic() < deadline:
        time.sleep(0.05)
    cpu0, wall0 = server.cpu_sec(), time.monotonic()
    made = 0
    while time.monotonic() - wall0 < seconds:
        time.sleep(every)
        with open(journal, "a") as fh:  # a touch the watcher sees; readers skip a non-JSON line's seq
            fh.write("")
        os.utime(journal, None)
        made += 1
    time.sleep(1.0)  # the last change's delivery (the watcher looks every 0.25 s)
    cpu = server.cpu_sec() - cpu0
    wall = time.monotonic() - wall0
    for c in pool:
        c.stop.set()
    got = [c.changes for c in pool]
    return {"clients": clients, "seconds": wall, "changes_made": made, "min_received": min(got),
            "max_received": max(got), "refused": sum(c.refused for c in pool),
            "dropped": sum(max(0, made - g) for g in got), "errors": sum(len(c.errors) for c in pool),
            "server_cpu_pct": 100 * cpu / wall}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dags", type=int, default=100)
    ap.add_argument("--runs", type=int, default=10000)
    ap.add_argument("--dagu", default=os.path.join(os.path.dirname(sys.executable), "dagu"),
                    help="the dagu command to serve with (default: this venv's)")
    ap.add_argument("--upstream", default=None, help="upstream dagu binary to time GET /api/v1/dags on too")
    ap.add_argument("--only", default="api,paint,rss,log,sse")
    ap.add_argument("--quick", action="store_true", help="SSE for 10 s, fewer samples")
    ap.add_argument("--keep", default=None, metavar="DIR", help="generate into DIR (reused when it exists)")
    ap.add_argument("--json", default=None, metavar="OUT", help="write the figures as JSON")
    args = ap.parse_args(argv)
    only = set(args.only.split(","))
    root = args.keep or tempfile.mkdtemp(prefix="dagu-web-bench-")
    results: dict[str, Any] = {"dags": args.dags, "runs": args.runs}
    try:
        if not os.path.isdir(os.path.join(root, "home", "runs")):
            started = time.perf_counter()
            generate(root, args.dags, args.runs)
            results["generate_sec"] = time.perf_counter() - started
        home, dags = os.path.join(root, "home"), os.path.join(root, "dags")
        server = start_ours(args.dagu.split(), home, dags, root)
        try:
            results["rss_start_mb"] = server.rss_mb()  # listening; the index warms in the background
            started = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
            get(conn, "/api/v1/dags")
            conn.close()
            results["dags_first_ms"] = (time.perf_counter() - started) * 1000
            if "api" in only:
                results["dags_api"] = time_get(server.port, "/api/v1/dags", 20 if args.quick else 50)
                results["run_api"] = time_get(server.port, f"/api/v1/runs/bench-002/{newest_run(home, 'bench-002')}",
                                              20 if args.quick else 50)
            time.sleep(2.0)
            results["rss_idle_mb"] = server.rss_mb()
            if "paint" in only:
                results["paint"] = first_paint(server.port, f"/runs/bench-003/{newest_run(home, 'bench-003')}",
                                               3 if args.quick else 7)
            if "log" in only:
                results["log"] = big_log(server, home)
            if "sse" in only:
                results["sse"] = sse(server, home, 50, 10 if args.quick else 60)
            results["rss_end_mb"] = server.rss_mb()
        finally:
            server.stop()
        if args.upstream and "api" in only:
            up = start_upstream(os.path.expanduser(args.upstream), root, args.dags)
            try:
                time.sleep(1.0)
                results["upstream_rss_start_mb"] = up.rss_mb()
                results["upstream_dags_api"] = time_get(up.port, "/api/v1/dags", 20 if args.quick else 50)
                results["upstream_rss_idle_mb"] = up.rss_mb()
            finally:
                up.stop()
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print_table(results)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


def print_table(r: dict[str, Any]) -> None:
    def row(name: str, ours: str, upstream: str = "", target: str = "") -> None:
        print(f"| {name} | {ours} | {upstream} | {target} |")

    print(f"\n{r['dags']} DAGs, {r['runs']} past runs\n")
    print("| row | ours | upstream 1.30.2 | target |\n| --- | --- | --- | --- |")
    if "dags_api" in r:
        up = r.get("upstream_dags_api")
        row("GET /api/v1/dags median (p90)", f"{r['dags_api']['median_ms']:.1f} ms ({r['dags_api']['p90_ms']:.1f})",
            f"{up['median_ms']:.1f} ms ({up['p90_ms']:.1f})" if up else "", "<= 10 ms")
        row("GET /api/v1/runs/DAG/RUN median", f"{r['run_api']['median_ms']:.1f} ms")
    row("first GET /api/v1/dags, sent as the server starts listening", f"{r['dags_first_ms']:.0f} ms")
    if "paint" in r:
        row("run page first contentful paint (median, max)",
            f"{r['paint']['fcp_median_ms']:.0f} ms ({r['paint']['fcp_max_ms']:.0f})", "", "< 300 ms")
    row("server RSS: listening / idle, every run read", f"{r['rss_start_mb']:.1f} / {r['rss_idle_mb']:.1f} MB",
        f"{r['upstream_rss_start_mb']:.1f} / {r['upstream_rss_idle_mb']:.1f} MB" if "upstream_rss_idle_mb" in r else "",
        "<= 60 MB")
    if "log" in r:
        lg = r["log"]
        row(f"1 GiB log, {lg['reads']} ranged reads + tail: RSS before / peak / after",
            f"{lg['rss_before_mb']:.1f} / {lg['rss_peak_mb']:.1f} / {lg['rss_after_mb']:.1f} MB "
            f"({lg['served_mb'] / lg['seconds']:.0f} MB/s)", "", "no growth")
    if "sse" in r:
        s = r["sse"]
        row(f"{s['clients']} SSE clients, {s['seconds']:.0f} s: changes made / least received / refused",
            f"{s['changes_made']} / {s['min_received']} / {s['refused']}; dropped {s['dropped']}", "", "0 dropped")
        row("server CPU during the SSE run", f"{s['server_cpu_pct']:.1f} %", "", "< 10 %")


if __name__ == "__main__":
    sys.exit(main())
