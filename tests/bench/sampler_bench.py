#!/usr/bin/env python3
"""Sampler benchmark: what the accounting sampler costs the supervisor, in CPU %.

    .venv/bin/python tests/bench/sampler_bench.py [--seconds 10] [--interval 0.05] [--json]

Rows:

- `sleep`: one `sleep N` step watched for its whole life (the common case).
- `tree-20`: a shell with 19 `sleep N` children (20 processes).
- `enumerate-20 (children files)` / `enumerate-20 (psutil)`: one enumeration of that 20-process
  tree by following /proc/PID/task/TID/children (what the sampler does) versus
  `psutil.Process.children(recursive=True)` (which reads every process's stat on the host), in
  microseconds per call and as CPU % if done at every sample.

CPU % for the step rows is the benchmark process's own user+system time (getrusage) over the
wall time while the step runs: the main thread sits in `os.wait4`, so this is the sampler
thread's cost, with Python's overhead included.  It never asserts (machines are noisy); the
design target is at most 2% for a step that runs a minute.  Exit status 0.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from dagu.process.accounting import Sampler, read_children, read_stat


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def tree_command(processes: int, seconds: float) -> list[str]:
    """A shell with processes-1 sleeping children: `processes` processes in all."""
    return ["sh", "-c", f"for i in $(seq {processes - 1}); do sleep {seconds} & done; wait"]


def watched_step(argv: list[str], interval: float) -> dict[str, float]:
    """Run argv under a sampler; the sampler's CPU % over the step's wall time."""
    with Sampler(interval_sec=interval) as sampler:
        proc = subprocess.Popen(argv, start_new_session=True)
        wall0, cpu0 = time.monotonic(), cpu_seconds()
        sampler.watch(proc.pid)
        os.wait4(proc.pid, 0)
        stats = sampler.unwatch(proc.pid)
        wall, cpu = time.monotonic() - wall0, cpu_seconds() - cpu0
    return {"wall_sec": round(wall, 2), "cpu_ms": round(cpu * 1000, 1),
            "cpu_percent": round(100 * cpu / wall, 3), "samples": stats.samples,
            "processes": stats.processes}


def walk(pid: int) -> list[int]:
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        stat = read_stat(current)
        if stat is None:
            continue
        found.append(current)
        stack.extend(read_children(current, stat.threads))
    return found


def enumeration_cost(processes: int, interval: float, calls: int) -> dict[str, dict[str, float]]:
    """Microseconds per enumeration of a `processes`-process tree, both ways."""
    import psutil

    proc = subprocess.Popen(tree_command(processes, 60), start_new_session=True)
    try:
        deadline = time.monotonic() + 5
        while len(walk(proc.pid)) < processes and time.monotonic() < deadline:
            time.sleep(0.05)
        rows = {}
        for name, enumerate_tree in (
            ("children files", lambda: walk(proc.pid)),
            ("psutil", lambda: psutil.Process(proc.pid).children(recursive=True)),
        ):
            found = len(enumerate_tree())
            cpu0 = cpu_seconds()
            for _ in range(calls):
                enumerate_tree()
            per_call = (cpu_seconds() - cpu0) / calls
            rows[f"enumerate-{processes} ({name})"] = {
                "us_per_call": round(per_call * 1e6, 1), "found": found,
                "cpu_percent_at_interval": round(100 * per_call / interval, 3)}
        return rows
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--processes", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    rows: dict[str, dict[str, float]] = {
        "sleep": watched_step(["sleep", str(args.seconds)], args.interval),
        f"tree-{args.processes}": watched_step(tree_command(args.processes, args.seconds),
                                               args.interval),
    }
    rows.update(enumeration_cost(args.processes, args.interval, calls=300))
    host = sum(1 for name in os.listdir("/proc") if name.isdigit())
    if args.json:
        print(json.dumps({"interval_sec": args.interval, "host_processes": host, "rows": rows},
                         indent=2))
        return 0
    print(f"interval {args.interval * 1000:.0f} ms, {host} processes on this host")
    for name, row in rows.items():
        print(f"  {name:32} " + "  ".join(f"{k}={v}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
