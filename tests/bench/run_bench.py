"""Per-step overhead of runs, side by side with the floor and (optionally) upstream Dagu.

    python tests/bench/run_bench.py [--sizes 100,500,1000] [--repeat 3]
                                    [--dagu "CMD"] [--compare "CMD"] [--upstream BIN] [--json]

For each shape (a chain and a fan-out of `true` steps) and size N it times
`dagu start` of a compiled plan, subtracts the time of a 1-step run (process
startup, compile, state setup), divides by N-1, and subtracts the floor: the
cost of spawning `sh -c true` from Python once.  That remainder is what the
supervisor adds per step: state journal, env, accounting, scheduling.

--compare runs the same with another dagu command (e.g. the previous commit's
checkout, `"python -m dagu"` with another PYTHONPATH) and prints both columns.
--upstream runs upstream Dagu 1.x (its `start` of the YAML in 1.x spelling).
A last case prints 100 MB to stdout and reports wall time and the supervisor's
peak RSS (from wait4 of the `dagu start` process).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time


def floor_per_spawn(n: int = 200) -> float:
    started = time.perf_counter()
    for _ in range(n):
        subprocess.run(["sh", "-c", "true"], stdin=subprocess.DEVNULL)
    return (time.perf_counter() - started) / n


def write_dag(path: str, shape: str, n: int, legacy: bool = False) -> None:
    lines = [] if legacy else ["type: graph" if shape == "fanout" else "type: chain"]
    lines.append("steps:")
    for i in range(n):
        if legacy:
            lines.append(f"  - name: s{i}\n    command: \"true\"")
            if shape == "chain" and i:
                lines.append(f"    depends: [s{i - 1}]")
        else:
            lines.append(f"  - id: s{i}\n    command: \"true\"")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def timed(argv: list[str], env: dict[str, str], cwd: str) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one command, from wait4."""
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: a chatty engine must not block on it
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=errors)
        _pid, status, usage = os.wait4(proc.pid, 0)
        took = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        errors.seek(0)
        err = errors.read().decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(argv)} failed ({proc.returncode}): {err[-500:]}")
    return took, usage.ru_maxrss * 1024


def run_cases(columns: dict[str, list[str]], shape: str, n: int, repeat: int, work: str,
              upstream: bool = False) -> dict[str, float]:
    """Best wall time of each column for one case.  The columns take turns, run by run, so a
    machine that speeds up or slows down during the benchmark (they do, by up to 1.5x within
    minutes) moves every column alike instead of favouring whichever ran last."""
    path = os.path.join(work, f"{shape}{n}{'_up' if upstream else ''}.yaml")
    write_dag(path, shape, n, legacy=upstream)
    best = {name: float("inf") for name in columns}
    for r in range(repeat):
        for name, dagu in columns.items():
            home = tempfile.mkdtemp(dir=work)
            env = {**os.environ, "DAGU_HOME": home}
            argv = [*dagu, "start", path]
            if not upstream:
                plan = os.path.join(work, f"{shape}{n}.{name}.plan.json")
                if r == 0:
                    subprocess.run([*dagu, "compile", path, "-o", plan], env=env, check=True, capture_output=True)
                argv = [*dagu, "start", "-q", plan]
            best[name] = min(best[name], timed(argv, env, work)[0])
    return best


def per_step(columns: dict[str, list[str]], sizes: list[int], repeat: int, floor: float, work: str,
             upstream: bool = False) -> dict[str, dict[str, dict[int, float]]]:
    """column -> shape -> size -> ms per step above the floor."""
    out: dict[str, dict[str, dict[int, float]]] = {name: {} for name in columns}
    for shape in ("chain", "fanout"):
        base = run_cases(columns, shape, 1, repeat, work, upstream)
        for name in columns:
            out[name][shape] = {}
        for n in sizes:
            if upstream and n > 500:
                continue  # upstream rewrites its whole status per change: 1,000 steps take minutes
            total = run_cases(columns, shape, n, repeat, work, upstream)
            for name in columns:
                out[name][shape][n] = ((total[name] - base[name]) / (n - 1) - floor) * 1000
    return out


def big_output(dagu: list[str], work: str) -> tuple[float, int]:
    path = os.path.join(work, "big.yaml")
    with open(path, "w") as fh:
        fh.write("steps:\n  - id: big\n    command: head -c 104857600 /dev/zero\n")
    env = {**os.environ, "DAGU_HOME": tempfile.mkdtemp(dir=work)}
    return timed([*dagu, "start", "-q", path], env, work)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,500,1000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dagu", default=f"{sys.executable} -m dagu")
    ap.add_argument("--compare", default=None, help="another dagu command to measure side by side")
    ap.add_argument("--upstream", default=None, help="upstream Dagu 1.x binary")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    work = tempfile.mkdtemp(prefix="dagu-run-bench-")
    floor = floor_per_spawn()
    columns = {"this": shlex.split(args.dagu)}
    if args.compare:
        columns["compare"] = shlex.split(args.compare)
    results = per_step(columns, sizes, args.repeat, floor, work)
    if args.upstream:
        upstream = {"upstream": [args.upstream]}
        results.update(per_step(upstream, [s for s in sizes if s <= 500], 1, floor, work, True))
    big = {name: big_output(cmd, work) for name, cmd in columns.items()}
    if args.json:
        print(json.dumps({"floor_ms": floor * 1000, "per_step_ms": results,
                          "big_output": {k: {"sec": v[0], "rss_bytes": v[1]} for k, v in big.items()}}, indent=1))
        return 0
    print(f"floor: spawning sh -c true from Python = {floor * 1000:.2f} ms")
    print("per-step overhead above the floor (ms):")
    header = "  shape     N  " + "".join(f"{name:>12}" for name in results)
    print(header)
    for shape in ("chain", "fanout"):
        for n in sizes:
            cells = "".join(f"{results[name][shape].get(n, float('nan')):>12.2f}" for name in results)
            print(f"  {shape:<7}{n:>5}  {cells}")
    for name, (sec, rss) in big.items():
        print(f"100 MB of stdout ({name}): {sec:.2f} s, supervisor peak RSS {rss / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
