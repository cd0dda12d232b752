"""What a sub-DAG run costs: a `call` step and a `parallel` item, side by side with command steps.

    python tests/bench/call_bench.py [--calls 20] [--items 200] [--repeat 5]
                                     [--dagu "CMD"] [--compare "CMD"] [--spawn] [--json]

Rows (medians of `--repeat` whole `dagu start` runs, each with a fresh DAGU_HOME):

- *per call above a command step*: a chain of N steps that each `call:` a one-step child DAG,
  minus a chain of N `true` steps, divided by N (the way tests/bench/run.py measures it, and
  how upstream's ~24 ms was measured);
- *per parallel item above a command step*: one step whose `parallel:` runs N items of the
  child (max_concurrent 1, so items do not overlap), minus the same chain of N `true` steps,
  divided by N;
- *parallel fan-out of M items*: the wall time of one step calling the child for M items at
  the default max_concurrent (10).

Columns: `--dagu` (this checkout), `--compare` (another dagu command, e.g. an older checkout
on PYTHONPATH) and, with `--spawn`, this checkout again with DAGU_SUBRUN_FORK=0 (every sub-run
a fresh `dagu` process, as before sub-runs were forked).  The columns' runs are interleaved
(a, b, c, a, b, c, ...) so a busy moment of the shared machine hits them alike.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run_bench  # noqa: E402 - the same timing helper (wall time and peak RSS from wait4)

CHILD = ["---", "name: child", "steps:", "  - id: only", '    command: "true"']


def chain_yaml(n: int, call: bool) -> str:
    """A chain of n steps that each call the one-step child (call=True) or run `true`."""
    lines = ["steps:"]
    for i in range(n):
        lines += [f"  - id: s{i}", "    call: child" if call else '    command: "true"']
    return "\n".join(lines + CHILD) + "\n"


def parallel_yaml(n: int, max_concurrent: int | None) -> str:
    """One step running the child for items 0..n-1 (at most max_concurrent at once)."""
    lines = ["steps:", "  - id: fan", "    call: child", "    parallel:",
             f"      items: [{', '.join(str(i) for i in range(n))}]"]
    if max_concurrent is not None:
        lines.append(f"      max_concurrent: {max_concurrent}")
    return "\n".join(lines + CHILD) + "\n"


CASES = {  # name -> (yaml for n)
    "calls": lambda n: chain_yaml(n, True),
    "commands": lambda n: chain_yaml(n, False),
    "items": lambda n: parallel_yaml(n, 1),
    "fanout": lambda n: parallel_yaml(n, None),
}


def measure(columns: dict[str, tuple[list[str], dict[str, str]]], sizes: dict[str, int], repeat: int,
            work: str) -> dict[str, dict[str, float]]:
    """Median wall seconds of each case for each column, runs interleaved across columns."""
    plans = {}
    for case, n in sizes.items():
        path = os.path.join(work, f"{case}{n}.yaml")
        with open(path, "w") as fh:
            fh.write(CASES[case](n))
        plans[case] = path
    times: dict[str, dict[str, list[float]]] = {c: {case: [] for case in sizes} for c in columns}
    for _ in range(repeat):
        for case in sizes:
            for name, (argv, extra) in columns.items():
                home = tempfile.mkdtemp(dir=work)
                env = {**os.environ, **extra, "DAGU_HOME": home}
                plan = os.path.join(home, "plan.json")
                subprocess.run([*argv, "compile", plans[case], "-o", plan], env=env, check=True, cwd=work,
                               capture_output=True)
                times[name][case].append(run_bench.timed([*argv, "start", "-q", plan], env, work)[0])
    return {c: {case: statistics.median(v) for case, v in cases.items()} for c, cases in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=20, help="call steps (and command steps) in the chains")
    ap.add_argument("--items", type=int, default=200, help="items of the parallel fan-out")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dagu", default=f"{sys.executable} -m dagu")
    ap.add_argument("--compare", default=None, help="another dagu command to measure side by side")
    ap.add_argument("--spawn", action="store_true", help="also this dagu with DAGU_SUBRUN_FORK=0")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    columns = {"this": (shlex.split(args.dagu), {})}
    if args.spawn:
        columns["spawn"] = (shlex.split(args.dagu), {"DAGU_SUBRUN_FORK": "0"})
    if args.compare:
        columns["compare"] = (shlex.split(args.compare), {})
    sizes = {"calls": args.calls, "commands": args.calls, "items": args.calls, "fanout": args.items}
    work = tempfile.mkdtemp(prefix="dagu-call-bench-")
    med = measure(columns, sizes, args.repeat, work)
    rows = {
        f"per call above a command step ({args.calls} calls), ms":
            {c: (m["calls"] - m["commands"]) / args.calls * 1000 for c, m in med.items()},
        f"per parallel item above a command step ({args.calls} items, one at a time), ms":
            {c: (m["items"] - m["commands"]) / args.calls * 1000 for c, m in med.items()},
        f"parallel fan-out of {args.items} items (max_concurrent 10), wall s":
            {c: m["fanout"] for c, m in med.items()},
        f"chain of {args.calls} command steps, wall s": {c: m["commands"] for c, m in med.items()},
    }
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    width = max(len(r) for r in rows)
    print(f"{'':<{width}}" + "".join(f"{c:>12}" for c in columns))
    for row, cells in rows.items():
        print(f"{row:<{width}}" + "".join(f"{cells[c]:>12.3f}" for c in columns))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
