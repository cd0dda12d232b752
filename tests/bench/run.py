#!/usr/bin/env python3
"""The numbers dagu is measured by, in one table from one run.

    python tests/bench/run.py [--frozen PATH] [--compare CMD] [--repeat N] [--json]

Columns: the installed `dagu` (the script beside this Python), the frozen
binary (default dist/dagu, when it exists), and with --compare another dagu:
a previous build, or upstream Dagu 1.x's binary (recognised because it has no
`--version`; it then gets `version`, `validate` of the same workflows in 1.x
spelling, and `start` of YAML).  The last column is ours / compare: frozen (or
installed when nothing is frozen) over compare, so below 1.00 ours is faster or smaller.

Rows:
  startup        `--version` (warm), the frozen binary's first start (it unpacks
                 itself; fresh XDG_CACHE_HOME), `validate` of a 10-step file, `start` of a
                 10-step chain of `true`: first run (a fresh DAGU_HOME each time, so ours
                 compiles) and re-run (one DAGU_HOME, warmed by one run: ours reuses the plan)
  compile        `compile FILE -o PLAN` of 1,000 and 10,000-step chains and random graphs
                 (compile_bench.py's workloads), and the peak RSS of the 10,000-step ones
  per step       what the supervisor adds per step to a 100-step chain and fan-out of
                 `true`, above the floor of spawning `sh -c true` from Python (run_bench.py);
                 and what a sub-DAG `call` adds over a command step (it starts another dagu)
  100 MB output  wall time and the supervisor's peak RSS while a step prints 100 MB

Times are medians of --repeat rounds, in each of which every engine is measured
once, in turn (a shared machine's busy minutes then hit every column alike); each
command with a throwaway DAGU_HOME.  --before CMD adds a column for another build of ours (e.g. the
previous commit installed in a scratch venv), measured in the same run.  Nothing is asserted: machines are noisy.  Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compile_bench  # noqa: E402
import run_bench  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
UNPACK_MAGIC = b"DAGUPAK1"  # the last bytes of a binary built by build/freeze.py --mode unpack-once
COMPILE_SIZES = (1000, 10000)
PER_STEP_SIZE = 100
CALLS = 10


@dataclass
class Engine:
    name: str
    argv: list[str]
    upstream: bool = False   # Dagu 1.x: `version`, `validate` instead of compile, 1.x spelling
    unpacks: bool = False    # a single file that unpacks itself once (first start measured apart)


@dataclass
class Row:
    label: str
    unit: str
    values: dict[str, float | None]


def is_upstream(argv: list[str]) -> bool:
    done = subprocess.run([*argv, "--version"], capture_output=True, text=True)
    return not (done.returncode == 0 and done.stdout.startswith("dagu "))


def unpacks_once(argv: list[str]) -> bool:
    path = shutil.which(argv[0])
    if len(argv) != 1 or path is None:
        return False
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell() < len(UNPACK_MAGIC):
            return False
        fh.seek(-len(UNPACK_MAGIC), os.SEEK_END)
        return fh.read() == UNPACK_MAGIC


def engine(name: str, command: str) -> Engine:
    argv = shlex.split(command)
    if argv and os.sep in argv[0]:
        argv[0] = os.path.abspath(argv[0])  # the benchmark runs commands from other directories
    return Engine(name, argv, upstream=is_upstream(argv), unpacks=unpacks_once(argv))


def median_ms(argv: list[str], repeat: int, cwd: Path, env: dict[str, str]) -> float | None:
    return compile_bench.measure(argv, repeat, cwd, env).ms


def startup(e: Engine, repeat: int, work: Path) -> list[Row]:
    env = compile_bench.bench_env(work / f"home-{e.name}")
    version = [*e.argv, "version"] if e.upstream else [*e.argv, "--version"]
    compile_bench.measure(version, 1, work, env)  # warm: page cache, and an unpack-once binary's copy
    small = work / ("legacy" if e.upstream else "v2") / f"chain_{compile_bench.SMALL_STEPS}.yaml"
    first = None
    if e.unpacks:
        runs = [compile_bench.measure(version, 1, work, {**env, "XDG_CACHE_HOME": str(work / f"cache-{e.name}-{i}")}).ms
                for i in range(repeat)]
        first = None if None in runs else statistics.median(runs)
        # The copies just unpacked (~40 MB each) are dirty in the page cache; on ext4 the next
        # fsync of any file (a `compile -o`, a run's journal) waits for them to be written, so
        # the rows measured next would pay for this one.
        os.sync()
    return [Row("--version (warm)", "ms", {e.name: median_ms(version, repeat, work, env)}),
            Row("--version, first start (unpacks)", "ms", {e.name: first}),
            Row(f"validate {compile_bench.SMALL_STEPS}-step file", "ms",
                {e.name: median_ms([*e.argv, "validate", str(small)], repeat, small.parent, env)})]


def chain_of_true(n: int, legacy: bool) -> str:
    """n steps of `true`, each after the one before (1.x spelling: names and depends)."""
    lines = ["steps:"]
    for i in range(n):
        lines += [f"  - {'name' if legacy else 'id'}: s{i}", '    command: "true"']
        if legacy and i:
            lines.append(f"    depends: [s{i - 1}]")
    return "\n".join(lines) + "\n"


def starting(e: Engine, repeat: int, work: Path) -> list[Row]:
    """`start` of a small chain: each time in a fresh DAGU_HOME, and again and again in one."""
    folder = work / f"start-{e.name}"
    folder.mkdir()
    path = folder / f"chain_{compile_bench.SMALL_STEPS}.yaml"
    path.write_text(chain_of_true(compile_bench.SMALL_STEPS, e.upstream))
    argv = [*e.argv, "start", str(path)] if e.upstream else [*e.argv, "start", "-q", str(path)]
    firsts = [median_ms(argv, 1, folder, compile_bench.bench_env(folder / f"home-first-{i}")) for i in range(repeat)]
    env = compile_bench.bench_env(folder / "home-rerun")
    compile_bench.measure(argv, 1, folder, env)  # the first run: ours compiles and keeps the plan
    n = compile_bench.SMALL_STEPS
    return [Row(f"start {n}-step chain of true: first run", "ms",
                {e.name: None if None in firsts else statistics.median(firsts)}),
            Row(f"start {n}-step chain of true: re-run", "ms", {e.name: median_ms(argv, repeat, folder, env)})]


def compiling(e: Engine, repeat: int, work: Path) -> list[Row]:
    env = compile_bench.bench_env(work / f"home-{e.name}")
    rows, memory = [], []
    for n in COMPILE_SIZES:
        for kind in ("chain", "graph"):
            if e.upstream:
                path = work / "legacy" / f"{kind}_{n}.yaml"
                argv = [*e.argv, "validate", str(path)]
            else:
                path = work / "v2" / f"{kind}_{n}.yaml"
                argv = [*e.argv, "compile", str(path), "-o", str(work / f"{e.name}.plan.json")]
            done = compile_bench.measure(argv, repeat, path.parent, env)
            rows.append(Row(f"compile {kind} of {n:,} steps" + (" (upstream: validate)" if e.upstream else ""),
                            "ms", {e.name: done.ms}))
            if n == max(COMPILE_SIZES):
                memory.append(Row(f"compile {kind} of {n:,} steps: peak RSS", "MiB", {e.name: done.mb}))
    return rows + memory


def calls_yaml(n: int, call: bool, legacy: bool) -> str:
    """A chain of n steps that each call a one-step sub-DAG (call=True) or run `true` (call=False)."""
    lines = ["steps:"]
    for i in range(n):
        lines.append(f"  - {'name' if legacy else 'id'}: s{i}")
        lines.append("    call: child" if call else '    command: "true"')
        if legacy and i:
            lines.append(f"    depends: [s{i - 1}]")
    lines += ["---", "name: child", "steps:", f"  - {'name' if legacy else 'id'}: only", '    command: "true"']
    return "\n".join(lines) + "\n"


def call_overhead(e: Engine, repeat: int, scratch: Path) -> float:
    """What a sub-DAG call costs above a command step: it starts another `dagu` (ms per call)."""
    best = {}
    for call in (True, False):
        path = scratch / f"calls-{call}.yaml"
        path.write_text(calls_yaml(CALLS, call, e.upstream))
        env = {**os.environ, "DAGU_HOME": str(scratch / f"home-calls-{call}")}
        best[call] = min(run_bench.timed([*e.argv, "start", "-q", str(path)], env, str(scratch))[0]
                         for _ in range(repeat))
    return (best[True] - best[False]) / CALLS * 1000


def running(e: Engine, repeat: int, floor: float, work: Path) -> list[Row]:
    scratch = work / f"run-{e.name}"
    scratch.mkdir()
    per = run_bench.per_step({e.name: e.argv}, [PER_STEP_SIZE], repeat, floor, str(scratch), e.upstream)[e.name]
    call = call_overhead(e, repeat, scratch)
    sec, rss = run_bench.big_output(e.argv, str(scratch))
    return [Row(f"per step above floor, chain of {PER_STEP_SIZE}", "ms", {e.name: per["chain"][PER_STEP_SIZE]}),
            Row(f"per step above floor, fan-out of {PER_STEP_SIZE}", "ms", {e.name: per["fanout"][PER_STEP_SIZE]}),
            Row("sub-DAG call, per call above a command step", "ms", {e.name: call}),
            Row("100 MB stdout step: wall", "s", {e.name: sec}),
            Row("100 MB stdout step: supervisor peak RSS", "MiB", {e.name: rss / 2**20})]


def idle_scheduler(e: Engine, work: Path, settle_sec: float = 3.0, measure_sec: float = 10.0) -> list[Row]:
    """RSS and CPU of a scheduler with 10 DAGs whose next tick is far away (upstream: `scheduler -d`)."""
    dags = work / f"sched-{e.name}" / "dags"
    dags.mkdir(parents=True)
    for i in range(10):
        (dags / f"d{i}.yaml").write_text(f'schedule: "0 0 1 1 *"\nsteps:\n  - {"name" if e.upstream else "id"}: s\n'
                                         f'    command: echo {i}\n')
    home = work / f"sched-{e.name}" / "home"
    home.mkdir()
    argv = [*e.argv, "scheduler", "-d" if e.upstream else "--dags", str(dags)]
    proc = subprocess.Popen(argv, env={**os.environ, "DAGU_HOME": str(home)}, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import time

        time.sleep(settle_sec)
        if proc.poll() is not None:
            return [Row("idle scheduler, 10 DAGs: RSS", "MiB", {e.name: None}),
                    Row("idle scheduler, 10 DAGs: CPU", "%", {e.name: None})]

        def cpu_ticks() -> int:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])

        before, started = cpu_ticks(), time.monotonic()
        time.sleep(measure_sec)
        used = (cpu_ticks() - before) / os.sysconf("SC_CLK_TCK")
        took = time.monotonic() - started
        rss = next(int(line.split()[1]) for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
                   if line.startswith("VmRSS:")) / 1024
        return [Row("idle scheduler, 10 DAGs: RSS", "MiB", {e.name: rss}),
                Row("idle scheduler, 10 DAGs: CPU", "%", {e.name: 100 * used / took})]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


GROUPS = ("startup", "compile", "run", "scheduler")


def measure_engine(e: Engine, groups: list[str], repeat: int, floor: float, work: Path, progress) -> list[Row]:
    progress(f"  {e.name}: {shlex.join(e.argv)}{' (upstream 1.x)' if e.upstream else ''}")
    rows = []
    if "startup" in groups:
        rows += startup(e, repeat, work)
        rows += starting(e, repeat, work)
    if "compile" in groups:
        rows += compiling(e, repeat, work)
    if "run" in groups:
        rows += running(e, repeat, floor, work)
    if "scheduler" in groups:
        rows += idle_scheduler(e, work)
    return rows


def taking_turns(engines: list[Engine], groups: list[str], repeat: int, floor: float, work: Path,
                 progress) -> list[list[Row]]:
    """Every engine once per round, `repeat` rounds; each row is the median of its rounds.

    Why: the machine is shared, and measuring one engine after the other let a busy
    minute land on one column only; taking turns spreads it over all of them.  The
    scheduler group (tens of seconds) runs once per engine, after the rounds."""
    timed = [g for g in groups if g != "scheduler"]
    rounds: dict[str, list[list[Row]]] = {e.name: [] for e in engines}
    for r in range(repeat):
        folder = work / f"round-{r}"
        folder.mkdir()
        for shared in ("v2", "legacy"):  # the generated workflows, written once
            (folder / shared).symlink_to(work / shared)
        for e in engines:
            rounds[e.name].append(measure_engine(e, timed, 1, floor, folder, progress))
    results = []
    for e in engines:
        per_round = rounds[e.name]
        rows = [Row(row.label, row.unit, {e.name: _median([rs[i].values[e.name] for rs in per_round])})
                for i, row in enumerate(per_round[0])]
        if "scheduler" in groups:
            rows += idle_scheduler(e, work)
        results.append(rows)
    return results


def _median(values: list[float | None]) -> float | None:
    return None if not values or None in values else statistics.median(values)


def merge(per_engine: list[list[Row]]) -> list[Row]:
    rows = [Row(r.label.replace(" (upstream: validate)", ""), r.unit, {}) for r in per_engine[0]]
    for result in per_engine:
        for row, r in zip(rows, result):
            row.values.update(r.values)
    return rows


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    small = (unit == "ms" and abs(value) < 10) or (unit == "%" and abs(value) < 10)
    return f"{value:.2f}" if unit == "s" or small else f"{value:.0f}"


def table(rows: list[Row], names: list[str], base: str | None, other: str | None) -> str:
    headers = ["", "unit", *names] + ([f"{base}/{other}"] if base and other else [])
    cells = []
    for r in rows:
        line = [r.label, r.unit, *(fmt(r.values.get(n), r.unit) for n in names)]
        if base and other:
            a, b = r.values.get(base), r.values.get(other)
            line.append("-" if a is None or not b or b <= 0 or a < 0 else f"{a / b:.2f}")
        cells.append(line)
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    out = []
    for i, line in enumerate([headers, ["-" * w for w in widths], *cells]):
        out.append("  ".join(v.ljust(w) if j == 0 else v.rjust(w) for j, (v, w) in enumerate(zip(line, widths))))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--installed", metavar="CMD", help="the installed dagu (default: the dagu beside this Python)")
    ap.add_argument("--frozen", metavar="PATH", default=str(ROOT / "dist" / "dagu"),
                    help="the frozen binary (default: dist/dagu; skipped when missing)")
    ap.add_argument("--compare", metavar="CMD", help="another dagu: a previous build, or upstream's 1.x binary")
    ap.add_argument("--before", metavar="CMD", help="a previous build of ours, as one more column (no ratio)")
    ap.add_argument("--repeat", type=int, default=5, help="runs per measurement (default 5)")
    ap.add_argument("--only", metavar="GROUPS", default=",".join(GROUPS),
                    help=f"comma-separated row groups to measure (default: all of {','.join(GROUPS)})")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args(argv)
    groups = [g for g in args.only.split(",") if g]
    if args.repeat < 1:
        ap.error("--repeat must be positive")
    if not groups or set(groups) - set(GROUPS):
        ap.error(f"--only: choose among {','.join(GROUPS)}")

    engines = [engine("before", args.before)] if args.before else []
    engines.append(engine("installed", args.installed or shlex.join(compile_bench.our_command())))
    if os.path.isfile(args.frozen) and os.access(args.frozen, os.X_OK):
        engines.append(engine("frozen", args.frozen))
    if args.compare:
        engines.append(engine("compare", args.compare))
    progress = (lambda msg: None) if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))

    work = Path(tempfile.mkdtemp(prefix="dagu-bench-all-"))
    try:
        compile_bench.write_workloads(work, list(COMPILE_SIZES), compile_bench.SEED)
        floor = run_bench.floor_per_spawn() if "run" in groups else 0.0
        results = taking_turns(engines, groups, args.repeat, floor, work, progress)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = merge(results)
    names = [e.name for e in engines]
    base = "frozen" if "frozen" in names else "installed"
    other = "compare" if "compare" in names else None
    if args.json:
        print(json.dumps({"floor_ms": floor * 1000, "repeat": args.repeat,
                          "engines": {e.name: {"argv": e.argv, "upstream": e.upstream} for e in engines},
                          "rows": [{"label": r.label, "unit": r.unit, **r.values} for r in rows]}, indent=1))
        return 0
    for e in engines:
        print(f"{e.name}: {shlex.join(e.argv)}{' (upstream 1.x)' if e.upstream else ''}")
    floor_note = f"floor: spawning `sh -c true` from Python = {floor * 1000:.2f} ms; " if "run" in groups else ""
    print(f"{floor_note}median of {args.repeat} rounds, the engines taking turns in each")
    print(table(rows, names, base, other))
    return 0


if __name__ == "__main__":
    sys.exit(main())
