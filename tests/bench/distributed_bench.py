"""Distributed dispatch on this machine: a real redis-server and N real `dagu worker` processes.

Prints, from the runs' own records (claims and journals):
- dispatch latency: one run at a time to idle workers, sent -> claimed by a worker (the broker's
  hand-off) and claimed -> `run_started` (the supervisor's start-up), median and max;
- throughput: RUNS runs of one `sleep 0.1` step sent at once, runs per minute over the workers.

    .venv/bin/python tests/bench/distributed_bench.py [--workers 3] [--slots 2] [--runs 100]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # `tests` as a package of the checkout

from tests.distributed.harness import Cluster, start_redis, wait_until  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--single", type=int, default=10)
    args = ap.parse_args()
    from dagu.distributed.launcher import RemoteLauncher
    from dagu.distributed.routing import queue_for
    from dagu.launch.base import START, RunRequest

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        redis = start_redis(tmp)
        c = Cluster(tmp, f"redis://127.0.0.1:{redis.port}/0")
        try:
            for n in range(args.workers):
                c.worker(f"b{n}", "bench=1", max_active_runs=args.slots)
            c.write("b.yaml", "worker_selector: {bench: 1}\nmax_active_runs: 1000\nsteps:\n"
                              "  - name: s\n    command: sleep 0.1\n")
            plan = tmp / "b.json"
            assert c.run("compile", "b.yaml", "-o", str(plan)).returncode == 0
            text = plan.read_text()
            launcher = RemoteLauncher(str(c.home), c.broker, c.env)
            queue = queue_for({"bench": "1"})
            launcher.send(RunRequest(START, "b", "warm"), queue, text)  # connects; not measured
            c.final("b", "warm", 60)

            def claim(run_id: str) -> dict:
                return json.loads((c.home / "distributed" / "claims" / "b" / f"{run_id}.json").read_text())

            def started(run_id: str) -> float:
                return next(e["at"] for e in c.journal("b", run_id) if e["ev"] == "run_started")

            handoff, startup = [], []
            for i in range(args.single):
                run_id = f"s{i:03d}"
                sent = time.time()
                launcher.send(RunRequest(START, "b", run_id), queue, text)
                c.final("b", run_id, 60)
                handoff.append(claim(run_id)["at"] - sent)
                startup.append(started(run_id) - claim(run_id)["at"])
            ids = [f"r{i:04d}" for i in range(args.runs)]
            t0 = time.time()
            for run_id in ids:
                launcher.send(RunRequest(START, "b", run_id), queue, text)
            sent_sec = time.time() - t0

            def done() -> bool:
                for run_id in ids:
                    path = c.home / "runs" / "b" / run_id / "status.json"
                    if not path.exists() or json.loads(path.read_text())["status"] != "succeeded":
                        return False
                return True

            wait_until(done, 600, "all runs")
            last = max(json.loads((c.home / "runs" / "b" / r / "status.json").read_text())["finished_at"] for r in ids)
            took = last - t0
            launcher.close()
        finally:
            c.close()
            redis.stop()
    ms = lambda xs: f"median {statistics.median(xs) * 1000:.0f} ms, max {max(xs) * 1000:.0f} ms"  # noqa: E731
    print(f"workers {args.workers} x {args.slots} slots")
    print(f"hand-off (sent -> claimed by a worker): {ms(handoff)}")
    print(f"supervisor start (claimed -> run_started): {ms(startup)}")
    print(f"{args.runs} runs sent in {sent_sec * 1000:.0f} ms ({args.runs / sent_sec:.0f}/s); all ended after "
          f"{took:.1f} s: {args.runs / took * 60:.0f} runs/min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
