#!/usr/bin/env python3
"""Scheduler benchmark: start latency at the minute, idle cost, reload time; ours beside upstream 1.x.

    .venv/bin/python tests/bench/scheduler_bench.py [--minutes 2] [--dags 100] [--idle-seconds 30]
        [--reloads 5] [--ours CMD] [--upstream BIN|none] [--only latency,idle,reload]
        [--as-is-env] [--json PATH] [--previous PATH]

The requirement it checks: with 100 DAGs scheduled every minute, runs start within 1 s of the
minute boundary (median); the idle scheduler uses under 1% of one core and under 60 MB RSS; it
reloads a changed file within 2 s.  Each implementation gets a fresh DAGU_HOME and runs alone
(they would otherwise compete for the CPU), ours first:

- latency: N DAGs `schedule: "* * * * *"`, one `true` step.  The scheduler runs across
  --minutes boundaries after it is ready; per run, latency = the start time the run recorded
  minus the boundary.  Ours: runs/<dag>/<dag>-<tick>/status.json `started_at` (the run_started
  event; the run id names the tick).  Upstream: the attempt's status.jsonl `createdAt` (ms; its
  `startedAt` is whole seconds), boundary = the minute it falls in.  Runs upstream starts for the
  minute it was started in (it runs the current minute at start-up) are not counted.  The
  "launched" rows are when the scheduler said it had spawned the run (arrival of its log line;
  ours: `<dag>: start tick T: started`, upstream: `Job completed successfully`), which separates
  the scheduler's own delay from the run's start-up.
- idle: N DAGs `schedule: "0 0 1 1 *"`; after a settle, the CPU time of the scheduler process
  and of its process tree (children included, reaped ones via the kernel's child times) over
  --idle-seconds, as % of one core, and RSS sampled every second (max; MB = 10^6 bytes).
- reload: in the same idle scheduler, --reloads times: replace one file atomically (write a
  temp file, rename; its command changes, its schedule does not) and time until the scheduler
  says it loaded it (ours: `<file>: reloaded <dag>` on stderr; upstream: `DAG added/updated`
  name=<file>), by the arrival of that line.

Our scheduler runs with a bytecode cache (PYTHONPYCACHEPREFIX in the work dir, warmed by one
run; PYTHONDONTWRITEBYTECODE dropped) as an installed package would have: without one, each
`dagu start` compiles the modules edited since the last cached build again.  --as-is-env keeps
the caller's environment as it is.

The load average (os.getloadavg) is recorded at each phase: on a shared machine the latency
rows move with it.  It never asserts; exit status 0 (2 for bad arguments).  --json PATH writes
every number; --previous PATH (such a file from an earlier commit) adds its column and a ratio.
"""

from __future__ import annotations

import argparse
import calendar
import json
import math
import os
import re
import shlex
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
from pathlib import Path

import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compile_bench  # noqa: E402

UPSTREAM_DEFAULT = "/tmp/package/bin/dagu"
EVERY_MINUTE = "* * * * *"
FAR_AWAY = "0 0 1 1 *"
OUR_TICK = re.compile(r"-(\d{8}T\d{6}Z)$")
UP_LAUNCHED = re.compile(r'msg="Job completed successfully" job=(\S+) .*scheduledTime=(\S+)')
OUR_LAUNCHED = re.compile(r": (\S+): start tick (\S+): started ")


@dataclass
class Impl:
    """One scheduler under test: our dagu, or upstream's 1.x binary (1.x spelling, `-d DIR`)."""
    name: str
    argv: list[str]
    upstream: bool


@dataclass
class Line:
    at: float  # when the bench read it (time.time()): uniform across both implementations
    text: str


@dataclass
class Running:
    """A scheduler process and the lines of its stderr+stdout, read by a thread as they come."""
    proc: subprocess.Popen
    lines: list[Line] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self.lock:
                self.lines.append(Line(time.time(), raw.decode(errors="replace").rstrip("\n")))

    def snapshot(self) -> list[Line]:
        with self.lock:
            return list(self.lines)

    def wait_line(self, pred, since: float, timeout: float) -> Line | None:
        """The first line read at or after `since` that satisfies pred, waiting up to timeout."""
        deadline = time.time() + timeout
        while True:
            for line in self.snapshot():
                if line.at >= since and pred(line.text):
                    return line
            if time.time() >= deadline or self.proc.poll() is not None:
                return None
            time.sleep(0.01)


# -- set-up ---------------------------------------------------------------------


def dag_yaml(schedule: str, legacy: bool, command: str = "true") -> str:
    return f'schedule: "{schedule}"\nsteps:\n  - {"name" if legacy else "id"}: s\n    command: "{command}"\n'


def write_dags(directory: Path, n: int, schedule: str, legacy: bool) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (directory / f"d{i:03d}.yaml").write_text(dag_yaml(schedule, legacy))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scheduler_env(home: Path, pycache: Path | None) -> dict[str, str]:
    """bench_env, plus a bytecode cache for our Python (see --as-is-env)."""
    env = compile_bench.bench_env(home)
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def warm_up(impl: Impl, work: Path, pycache: Path | None) -> None:
    """One run of a one-step DAG, so the bytecode cache holds every module a run imports."""
    d = work / f"warm-{impl.name}"
    d.mkdir()
    (d / "w.yaml").write_text(dag_yaml(FAR_AWAY, False))
    subprocess.run([*impl.argv, "start", "-q", str(d / "w.yaml")], env=scheduler_env(d / "home", pycache),
                   cwd=str(d), stdin=subprocess.DEVNULL, capture_output=True, check=True)


def launch(impl: Impl, dags: Path, home: Path, pycache: Path | None = None) -> Running:
    env = scheduler_env(home, pycache)
    if impl.upstream:
        env["DAGU_SCHEDULER_PORT"] = str(free_port())  # its health server defaults to 8090
        argv = [*impl.argv, "scheduler", "-d", str(dags)]
    else:
        argv = [*impl.argv, "scheduler", "--dags", str(dags)]
    proc = subprocess.Popen(argv, env=env, cwd=str(home.parent), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    running = Running(proc)
    threading.Thread(target=running.pump, daemon=True).start()
    return running


def wait_ready(impl: Impl, running: Running, n: int, timeout: float = 120.0) -> float:
    """When the scheduler has loaded all n DAGs (ours: n `loaded` lines; upstream: `Scheduler started`)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        lines = running.snapshot()
        if impl.upstream:
            hit = [ln for ln in lines if 'msg="Scheduler started"' in ln.text]
            if hit:
                return hit[0].at
        else:
            loaded = [ln for ln in lines if re.search(r"\.yaml: loaded d\d+$", ln.text)]
            if len(loaded) >= n:
                return loaded[n - 1].at
        if running.proc.poll() is not None:
            break
        time.sleep(0.05)
    tail = "\n".join(ln.text for ln in running.snapshot()[-20:])
    raise SystemExit(f"{impl.name}: scheduler not ready (exit {running.proc.poll()}):\n{tail}")


def stop(running: Running) -> None:
    """SIGTERM the scheduler (the process we started), SIGKILL its group if it lingers."""
    if running.proc.poll() is None:
        running.proc.send_signal(signal.SIGTERM)
        try:
            running.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(running.proc.pid, signal.SIGKILL)
            running.proc.wait()


# -- statistics -----------------------------------------------------------------


def summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "p90": None, "max": None, "min": None}
    vs = sorted(values)
    p90 = vs[min(len(vs) - 1, math.ceil(0.9 * len(vs)) - 1)]  # nearest rank
    return {"median": statistics.median(vs), "p90": p90, "max": vs[-1], "min": vs[0]}


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def host_busy(start: float, end: float) -> float | None:
    """% of all CPUs busy between two instants (time.time()), e.g. just before a boundary while
    the scheduler waits: what other users of the machine take.  None when `start` is past."""
    if time.time() > start:
        return None
    time.sleep(start - time.time())
    psutil.cpu_percent(None)
    time.sleep(max(0.0, end - time.time()))
    return psutil.cpu_percent(None)


# -- latency --------------------------------------------------------------------


def our_starts(home: Path) -> dict[tuple[str, float], float]:
    """(dag, tick) -> recorded start time, for the runs our scheduler started."""
    out = {}
    runs = home / "runs"
    for run in runs.glob("*/*"):
        m = OUR_TICK.search(run.name)
        if not m:
            continue
        tick = float(calendar.timegm(time.strptime(m.group(1), "%Y%m%dT%H%M%SZ")))
        started = None
        try:
            started = json.loads((run / "status.json").read_text()).get("started_at")
        except (OSError, ValueError):
            pass
        if started is None:  # no snapshot yet: the run_started event in the journal
            try:
                for raw in (run / "journal.jsonl").read_text().splitlines():
                    ev = json.loads(raw)
                    if ev.get("ev") == "run_started":
                        started = ev["at"]
                        break
            except (OSError, ValueError):
                pass
        if started is not None:
            out[(run.parent.name, tick)] = float(started)
    return out


def upstream_starts(home: Path) -> dict[tuple[str, float], float]:
    """(dag, minute) -> the attempt's createdAt, from data/dag-runs/<dag>/.../status.jsonl."""
    out = {}
    for status in (home / "data" / "dag-runs").glob("*/dag-runs/*/*/*/dag-run_*/attempt_*/status.jsonl"):
        try:
            lines = status.read_text().splitlines()
            rec = json.loads(lines[-1]) if lines else None
        except (OSError, ValueError):
            continue
        if not rec or not rec.get("createdAt"):
            continue
        started = rec["createdAt"] / 1000.0
        out[(rec.get("name") or status.parts[-8], math.floor(started / 60) * 60.0)] = started
    return out


def launches(impl: Impl, lines: list[Line]) -> dict[tuple[str, float], float]:
    """(dag, tick) -> when the scheduler said it had launched the run (arrival of its log line)."""
    out = {}
    for ln in lines:
        m = (UP_LAUNCHED if impl.upstream else OUR_LAUNCHED).search(ln.text)
        if m:
            tick = float(calendar.timegm(time.strptime(m.group(2), "%Y-%m-%dT%H:%M:%SZ")))
            out.setdefault((m.group(1), tick), ln.at)
    return out


def latency(impl: Impl, work: Path, n: int, minutes: int, pycache: Path | None, progress) -> dict:
    dags, home = work / f"lat-{impl.name}" / "dags", work / f"lat-{impl.name}" / "home"
    write_dags(dags, n, EVERY_MINUTE, impl.upstream)
    home.mkdir(parents=True)
    load_before = load()
    running = launch(impl, dags, home, pycache)
    try:
        ready = wait_ready(impl, running, n)
        first = math.ceil((ready + 2.0) / 60) * 60  # a boundary at least 2 s after it is ready
        boundaries = [first + 60.0 * k for k in range(minutes)]
        progress(f"  {impl.name}: ready; boundaries {time.strftime('%H:%M:%S', time.localtime(first))}"
                 f" + {minutes - 1} more; waiting {boundaries[-1] - time.time():.0f} s")
        busy = host_busy(first - 6.0, first - 0.5)
        deadline = boundaries[-1] + 45.0
        collect = upstream_starts if impl.upstream else our_starts
        while time.time() < deadline:
            time.sleep(1.0)
            if time.time() > boundaries[-1] + 2:
                starts = collect(home)
                if sum(1 for (_d, b) in starts if b in boundaries) >= n * minutes:
                    break
        load_after = load()
        starts = collect(home)
        launched = launches(impl, running.snapshot())
    finally:
        stop(running)
    per_minute = {b: [t - b for (_d, bb), t in starts.items() if bb == b] for b in boundaries}
    lat = [x for xs in per_minute.values() for x in xs]
    went = [t - b for (_d, b), t in launched.items() if b in boundaries]
    return {"start_latency_s": summary(lat), "launched_latency_s": summary(went),
            "started_per_minute": [len(per_minute[b]) for b in boundaries], "expected_per_minute": n,
            "boundaries": boundaries, "loadavg_before": load_before, "loadavg_after": load_after,
            "host_busy_pct_before": busy}


# -- idle and reload ------------------------------------------------------------


def tree_cpu(proc: psutil.Process) -> tuple[float, float]:
    """(CPU seconds of the process, of the process and its descendants, reaped ones included)."""
    t = proc.cpu_times()
    own = t.user + t.system
    tree = own + t.children_user + t.children_system
    for child in proc.children(recursive=True):
        try:
            c = child.cpu_times()
            tree += c.user + c.system
        except psutil.Error:
            pass
    return own, tree


def tree_rss(proc: psutil.Process) -> tuple[int, int]:
    own = proc.memory_info().rss
    tree = own
    for child in proc.children(recursive=True):
        try:
            tree += child.memory_info().rss
        except psutil.Error:
            pass
    return own, tree


def reload_marker(impl: Impl, filename: str):
    if impl.upstream:
        return lambda text: 'msg="DAG added/updated"' in text and f"name={filename}" in text
    return lambda text: text.endswith(f"{filename}: reloaded {filename.rsplit('.', 1)[0]}")


def idle_and_reload(impl: Impl, work: Path, n: int, seconds: float, reloads: int, settle: float,
                    do_idle: bool, do_reload: bool, pycache: Path | None, progress) -> dict:
    dags, home = work / f"idle-{impl.name}" / "dags", work / f"idle-{impl.name}" / "home"
    write_dags(dags, n, FAR_AWAY, impl.upstream)
    home.mkdir(parents=True)
    out: dict = {}
    running = launch(impl, dags, home, pycache)
    try:
        wait_ready(impl, running, n)
        time.sleep(settle)
        proc = psutil.Process(running.proc.pid)
        if do_idle:
            progress(f"  {impl.name}: idle, sampling {seconds:.0f} s")
            out["loadavg_before"] = load()
            psutil.cpu_percent(None)
            cpu0, wall0 = tree_cpu(proc), time.monotonic()
            rss: list[tuple[int, int]] = []
            while time.monotonic() - wall0 < seconds:
                rss.append(tree_rss(proc))
                time.sleep(min(1.0, max(0.0, seconds - (time.monotonic() - wall0))))
            cpu1, wall = tree_cpu(proc), time.monotonic() - wall0
            rss.append(tree_rss(proc))
            out.update(idle_cpu_pct=100 * (cpu1[0] - cpu0[0]) / wall,
                       idle_tree_cpu_pct=100 * (cpu1[1] - cpu0[1]) / wall,
                       idle_rss_mb=max(r[0] for r in rss) / 1e6, idle_tree_rss_mb=max(r[1] for r in rss) / 1e6,
                       idle_seconds=wall, loadavg_after=load(), host_busy_pct=psutil.cpu_percent(None))
        if do_reload:
            progress(f"  {impl.name}: {reloads} reloads")
            took = []
            for k in range(reloads):
                path = dags / f"d{k % n:03d}.yaml"
                tmp = path.with_name(f".{path.name}.tmp")  # hidden: neither scheduler loads it
                tmp.write_text(dag_yaml(FAR_AWAY, impl.upstream, f"echo changed {k}"))
                changed = time.time()
                os.replace(tmp, path)
                hit = running.wait_line(reload_marker(impl, path.name), changed, timeout=15.0)
                took.append(None if hit is None else hit.at - changed)
                time.sleep(1.0 + 0.37 * k)  # spread the changes over the phase of a polling loop
            ok = [t for t in took if t is not None]
            out.update(reload_s=summary(ok), reloads=len(took), reloads_seen=len(ok))
    finally:
        stop(running)
    return out


# -- report ---------------------------------------------------------------------


ROWS = [  # label, unit, path into an implementation's results, target: (text, bound) or None
    ("start latency, median", "s", ("latency", "start_latency_s", "median"), ("<= 1.0", 1.0)),
    ("start latency, p90", "s", ("latency", "start_latency_s", "p90"), None),
    ("start latency, max", "s", ("latency", "start_latency_s", "max"), None),
    ("scheduler launched it, median", "s", ("latency", "launched_latency_s", "median"), None),
    ("scheduler launched it, max", "s", ("latency", "launched_latency_s", "max"), None),
    ("runs started per minute", "runs", ("latency", "started_per_minute"), None),
    ("idle CPU, scheduler", "% core", ("idle", "idle_cpu_pct"), ("< 1", 1.0)),
    ("idle CPU, process tree", "% core", ("idle", "idle_tree_cpu_pct"), None),
    ("idle RSS, scheduler", "MB", ("idle", "idle_rss_mb"), ("< 60", 60.0)),
    ("idle RSS, process tree", "MB", ("idle", "idle_tree_rss_mb"), None),
    ("reload, median", "s", ("idle", "reload_s", "median"), ("<= 2.0", 2.0)),
    ("reload, max", "s", ("idle", "reload_s", "max"), None),
    ("reloads seen", "count", ("idle", "reloads_seen"), None),
]


def dig(result: dict | None, path: tuple[str, ...]):
    for key in path:
        if not isinstance(result, dict):
            return None
        result = result.get(key)
    return result


def cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return "/".join(str(v) for v in value)
    if isinstance(value, int):
        return str(value)
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def verdict(target: tuple[str, float] | None, value) -> str:
    if target is None or not isinstance(value, (int, float)):
        return ""
    return "ok" if value <= target[1] else "MISSED"


def table(results: dict[str, dict], previous: dict | None) -> str:
    names = list(results)
    headers = ["", "unit", "target", *names, "ours vs target"]
    if previous:
        headers += ["previous", "ours/prev"]
    cells = []
    for label, unit, path, target in ROWS:
        if all(dig(r, path) is None for r in results.values()):
            continue  # a phase not measured this time
        ours = dig(results.get("ours"), path)
        line = [label, unit, target[0] if target else "", *(cell(dig(results[n], path)) for n in names),
                verdict(target, ours)]
        if previous:
            prev = dig(previous.get("results", {}).get("ours"), path)
            ratio = "-" if not isinstance(ours, (int, float)) or not isinstance(prev, (int, float)) or prev <= 0 \
                else f"{ours / prev:.2f}"
            line += [cell(prev), ratio]
        cells.append(line)
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    rows = [headers, ["-" * w for w in widths], *cells]
    return "\n".join("  ".join(v.ljust(w) if j == 0 else v.rjust(w) for j, (v, w) in enumerate(zip(r, widths)))
                     for r in rows)


def git_commit() -> str | None:
    done = subprocess.run(["git", "-C", str(Path(__file__).resolve().parents[2]), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True)
    return done.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=int, default=2, help="minute boundaries to measure (default 2)")
    ap.add_argument("--dags", type=int, default=100, help="DAG files (default 100)")
    ap.add_argument("--idle-seconds", type=float, default=30.0, help="idle sampling window (default 30)")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds after loading before sampling (default 5)")
    ap.add_argument("--reloads", type=int, default=5, help="files changed one after another (default 5)")
    ap.add_argument("--ours", metavar="CMD", help="our dagu (default: the dagu beside this Python)")
    ap.add_argument("--upstream", metavar="BIN", default=UPSTREAM_DEFAULT,
                    help=f"upstream Dagu 1.x binary, or 'none' (default {UPSTREAM_DEFAULT}, skipped when missing)")
    ap.add_argument("--only", default="latency,idle,reload", help="phases, comma-separated")
    ap.add_argument("--as-is-env", action="store_true",
                    help="keep PYTHONDONTWRITEBYTECODE if set (default: our runs get a bytecode cache)")
    ap.add_argument("--json", metavar="PATH", help="write all results as JSON")
    ap.add_argument("--previous", metavar="PATH", help="a --json file of an earlier run: adds its column")
    args = ap.parse_args(argv)
    phases = {p for p in args.only.split(",") if p}
    if not phases or phases - {"latency", "idle", "reload"}:
        ap.error("--only: choose among latency,idle,reload")
    if args.minutes < 1 or args.dags < 1 or args.reloads < 1 or args.idle_seconds <= 0:
        ap.error("--minutes, --dags, --reloads and --idle-seconds must be positive")
    previous = json.loads(Path(args.previous).read_text()) if args.previous else None

    impls = [Impl("ours", shlex.split(args.ours) if args.ours else compile_bench.our_command(), False)]
    if args.upstream != "none" and os.access(args.upstream, os.X_OK):
        impls.append(Impl("upstream", [os.path.abspath(args.upstream)], True))
    progress = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731

    meta = {"commit": git_commit(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpus": os.cpu_count(),
            "loadavg_start": load(), "dags": args.dags, "minutes": args.minutes, "idle_seconds": args.idle_seconds,
            "reloads": args.reloads, "bytecode_cache": not args.as_is_env, "impls": {i.name: i.argv for i in impls},
            "targets": {label: t[0] for label, _u, _p, t in ROWS if t}}
    results: dict[str, dict] = {}
    work = Path(tempfile.mkdtemp(prefix="dagu-sched-bench-"))
    try:
        for impl in impls:
            results[impl.name] = {}
            pycache = None
            if not impl.upstream and not (args.as_is_env and os.environ.get("PYTHONDONTWRITEBYTECODE")):
                pycache = work / "pycache"
                warm_up(impl, work, pycache)
            if "latency" in phases:
                progress(f"{impl.name}: latency, {args.dags} DAGs every minute, {args.minutes} boundaries")
                results[impl.name]["latency"] = latency(impl, work, args.dags, args.minutes, pycache, progress)
            if phases & {"idle", "reload"}:
                progress(f"{impl.name}: idle and reload, {args.dags} DAGs at {FAR_AWAY!r}")
                results[impl.name]["idle"] = idle_and_reload(
                    impl, work, args.dags, args.idle_seconds, args.reloads, args.settle,
                    "idle" in phases, "reload" in phases, pycache, progress)
    finally:
        time.sleep(2)  # let the last runs finish writing before their home goes
        shutil.rmtree(work, ignore_errors=True)
    meta["loadavg_end"] = load()

    for impl in impls:
        print(f"{impl.name}: {shlex.join(impl.argv)}{' (upstream 1.x)' if impl.upstream else ''}")
    print(f"{args.dags} DAGs; {args.minutes} minute boundaries; idle window {args.idle_seconds:.0f} s; "
          f"{os.cpu_count()} CPUs; commit {meta['commit']}")
    for name, r in results.items():
        lat, idle = r.get("latency", {}), r.get("idle", {})
        notes = [f"{phase} loadavg {'/'.join(map(str, p[k]))} {k[8:]}" for phase, p in (("latency", lat), ("idle", idle))
                 for k in ("loadavg_before", "loadavg_after") if k in p]
        if lat.get("host_busy_pct_before") is not None:
            notes.append(f"all CPUs {lat['host_busy_pct_before']:.1f}% busy in the 5 s before the first boundary")
        if idle.get("host_busy_pct") is not None:
            notes.append(f"{idle['host_busy_pct']:.1f}% busy while idle was sampled")
        print(f"load ({name}): " + "; ".join(notes))
    if previous:
        print(f"previous: {args.previous} (commit {previous.get('meta', {}).get('commit')})")
    print(table(results, previous))
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
