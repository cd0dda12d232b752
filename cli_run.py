"""The run commands of `dagu` (start, retry, stop, restart, status, history, logs, cleanup, exec).

Kept apart from cli.py so the compile path stays small; like cli.py, this only
parses, calls the runtime and prints.  Runtime modules are imported inside the
commands so `dagu --version` and `dagu compile` never load them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
import time
from typing import Any, Callable

EXIT_OK, EXIT_FAILED = 0, 1


class CommandFailed(Exception):
    """The command could not do its job (refused run, unknown run, damaged files); exit 1."""


def _home() -> str:
    from dagu.store.runs import default_home

    return default_home()


def dag_name_of(file: str) -> str:
    """The DAG name a FILE argument stands for: a plan's root, a workflow's name, or the word itself."""
    if os.path.isfile(file):
        if file.endswith(".json"):
            from dagu.spec.plan import PlanError, load_plan

            try:
                return load_plan(file).root
            except PlanError as exc:
                raise CommandFailed(str(exc)) from None
        from dagu.compiler.pipeline import compile_file

        result = compile_file(file)
        if result.plan is not None:
            return result.plan.root
        return os.path.splitext(os.path.basename(file))[0]  # a broken file still has its history
    if re.fullmatch(r"[A-Za-z0-9_.-]+", file) and not file.endswith((".yaml", ".yml", ".json")):
        return file
    raise CommandFailed(f"{file}: no such file (give a workflow file, a plan file or a DAG name)")


def _words(flag: str | None, rest: list[str]) -> list[str]:
    from dagu.engine.params import ParamError, split_words

    if rest and rest[0] == "--":
        rest = rest[1:]
    try:
        return split_words(flag, rest)
    except ParamError as exc:
        raise CommandFailed(str(exc)) from None


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{sec:02d}s" if hours else f"{minutes}m{sec:02d}s"


def _fmt_bytes(n: int | None) -> str:
    if not n:
        return "0"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return str(n)


def _fmt_time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _summary(status: Any, run_path: str) -> str:
    steps = list(status.steps.values())
    counts: dict[str, int] = {}
    for s in steps:
        counts[s.status] = counts.get(s.status, 0) + 1
    took = (status.finished_at or time.time()) - (status.started_at or time.time())
    parts = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    lines = [f"dagu: run {status.run_id} of {status.dag!r} {status.status} in {_fmt_duration(took)}"
             + (f" ({parts})" if parts else "")]
    if status.error:
        lines.append(f"  {status.error}")
    for s in [*steps, *status.handlers.values()]:
        if s.status in ("failed", "aborted"):
            where = s.last.stderr if s.last and s.last.stderr else ""
            label = f"handler {s.handler}" if s.handler else f"step {s.id!r}"
            lines.append(f"  {label} {s.status}: {s.reason or ''}" + (f"  (stderr: {where})" if where else ""))
    return "\n".join(lines) + "\n"


def _run_outcome(run: Callable[[], Any], quiet: bool) -> int:
    from dagu.engine.runner import RunRefused
    from dagu.store.runs import StoreError

    try:
        outcome = run()
    except RunRefused as exc:
        raise CommandFailed(str(exc)) from None
    except StoreError as exc:
        raise CommandFailed(str(exc)) from None
    for problem in outcome.problems:
        sys.stderr.write(f"dagu: warning: {problem}\n")
    if not quiet:
        sys.stderr.write(_summary(outcome.status, outcome.run.path))
        sys.stderr.write("".join(f"{note}\n" for note in outcome.notes))
    return outcome.exit_code


def start_cmd(args: argparse.Namespace, load: Callable[[str], tuple[Any, str | None]]) -> int:
    plan, extra = load(args.file)
    if plan is None:
        sys.stderr.write(extra or "")
        return EXIT_FAILED
    if extra and args.parent is None:
        sys.stderr.write(extra)
    plan_text = None
    if args.file.endswith(".json"):
        with open(args.file, encoding="utf-8") as fh:
            plan_text = fh.read()
    words = _words(args.params, args.rest)
    from dagu.engine import runner

    quiet = args.quiet or args.parent is not None
    return _run_outcome(lambda: runner.start(plan, args.dag, words, args.run_id, _home(), os.environ,
                                             parent=args.parent, plan_text=plan_text,
                                             missed=args.missed), quiet)


def retry_cmd(args: argparse.Namespace) -> int:
    from dagu.engine import runner

    name = dag_name_of(args.file)
    return _run_outcome(lambda: runner.retry(name, args.run_id, _home(), os.environ), args.quiet)


def stop_cmd(args: argparse.Namespace) -> int:
    from dagu.engine import runner
    from dagu.store.runs import Store

    name = dag_name_of(args.file)
    stopped = runner.stop(Store(_home()), name)
    if not stopped:
        sys.stderr.write(f"dagu stop: no active run of {name!r}\n")
        return EXIT_OK
    for run in stopped:
        sys.stderr.write(f"dagu stop: stopped run {run.run_id} of {name!r}\n")
    return EXIT_OK


def restart_cmd(args: argparse.Namespace, load: Callable[[str], tuple[Any, str | None]]) -> int:
    from dagu.engine import runner
    from dagu.store.runs import Store

    plan, extra = load(args.file)
    if plan is None:
        sys.stderr.write(extra or "")
        return EXIT_FAILED
    store = Store(_home())
    latest = store.latest(plan.root)
    runner.stop(store, plan.root)
    words = list(latest.status.params) if latest is not None else []
    # positional params were recorded as "1=value": pass them back positionally
    words = [w.split("=", 1)[1] if w.split("=", 1)[0].isdigit() else w for w in words]
    return _run_outcome(lambda: runner.start(plan, None, words, None, _home(), os.environ), args.quiet)


def _view(name: str, run_id: str | None):
    from dagu.store.runs import Store

    store = Store(_home())
    if run_id is None:
        view = store.latest(name)
        if view is None:
            raise CommandFailed(f"no runs of {name!r} under {store.runs}")
        return view
    run = store.run(name, run_id)
    if not os.path.isdir(run.path):
        raise CommandFailed(f"no run {run_id!r} of {name!r} under {store.runs}")
    return run.read()


def _sub_runs(status: Any, depth: int = 0) -> list[dict[str, Any]]:
    """The tree of sub-DAG runs started by this run's steps (latest attempt of each step)."""
    from dagu.store.runs import Store

    store = Store(_home())
    out = []
    for state in [*status.steps.values(), *status.handlers.values()]:
        last = state.last
        for dag, run_id in (last.children or []) if last is not None else []:
            run = store.run(dag, run_id)
            child = run.read().status if os.path.isdir(run.path) else None
            out.append({"step": state.id, "dag": dag, "run_id": run_id,
                        "status": child.status if child else "missing",
                        "runs": _sub_runs(child, depth + 1) if child is not None and depth < 50 else []})
    return out


def _tree_lines(runs: list[dict[str, Any]], indent: str = "  ") -> list[str]:
    lines = []
    for r in runs:
        lines.append(f"{indent}{r['step']} -> {r['dag']} run {r['run_id']}: {r['status']}")
        lines += _tree_lines(r["runs"], indent + "    ")
    return lines


def scheduler_status_cmd(args: argparse.Namespace) -> int:
    """`dagu status --scheduler`: exit 0 when a scheduler is alive and looping, else 1."""
    from dagu.schedule.status import render_text, scheduler_report

    report = scheduler_report(_home(), time.time())
    if args.format == "json":
        sys.stdout.write(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render_text(report))
    return EXIT_OK if report.healthy else EXIT_FAILED


def status_cmd(args: argparse.Namespace) -> int:
    from dagu.schedule.status import compile_warning

    name = dag_name_of(args.file)
    warning = compile_warning(_home(), args.file, name)  # the scheduler runs an older plan than the file
    if warning:
        sys.stderr.write(f"dagu status: warning: {warning}\n")
    view = _view(name, args.run_id)
    st = view.status
    if args.format == "json":
        data = {**st.to_dict(), "path": view.path, "live": view.live, "problems": view.problems,
                "sub_runs": _sub_runs(st)}
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        return EXIT_OK
    for problem in view.problems:
        sys.stderr.write(f"dagu status: warning: {problem}\n")
    took = ((st.finished_at or time.time()) - st.started_at) if st.started_at else None
    out = [f"dag:      {st.dag}",
           f"run:      {st.run_id}",
           f"status:   {st.status}" + ("  (interrupted)" if st.interrupted else ""),
           f"started:  {_fmt_time(st.started_at)}   duration: {_fmt_duration(took)}   pid: {st.pid}  host: {st.host}"]
    if st.params:
        out.append(f"params:   {' '.join(st.params)}")
    if st.parent:
        out.append(f"parent:   {st.parent}")
    if st.error:
        out.append(f"error:    {st.error}")
    out.append(f"path:     {view.path}")
    rows = [("STEP", "STATUS", "TRIES", "EXIT", "WALL", "CPU", "PEAK RSS", "READ", "WRITTEN", "NOTE")]
    for s in [*st.steps.values(), *st.handlers.values()]:
        last = s.last
        usage = (last.usage or {}) if last else {}
        exit_text = "-"
        if last is not None:
            exit_text = last.signal or ("-" if last.exit_code is None else str(last.exit_code))
        cpu = (usage.get("user_sec", 0) + usage.get("sys_sec", 0)) if usage else None
        label = f"<{s.handler}>" if s.handler else s.id
        rows.append((label, s.status, str(len(s.attempts)), exit_text,
                     _fmt_duration(usage.get("wall_sec")) if usage else "-",
                     _fmt_duration(cpu) if usage else "-",
                     _fmt_bytes(usage.get("peak_rss_bytes")) if usage else "-",
                     _fmt_bytes(usage.get("read_bytes")) if usage else "-",
                     _fmt_bytes(usage.get("write_bytes")) if usage else "-",
                     (last.error if last and last.error else s.reason) or ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    out.append("")
    for r in rows:
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    tree = _tree_lines(_sub_runs(st))
    if tree:
        out += ["", "sub-DAG runs:", *tree]
    sys.stdout.write("\n".join(line.rstrip() for line in out) + "\n")
    return EXIT_OK


def history_cmd(args: argparse.Namespace) -> int:
    from dagu.store.runs import Store
    from dagu.schedule.tick_history import TickRow, merge, tick_rows

    name = dag_name_of(args.file)
    items = merge(Store(_home()).views(name), tick_rows(_home(), name, time.time()))
    if args.limit is not None:
        items = items[: args.limit]
    if args.format == "json":
        rows = [v.to_dict() if isinstance(v, TickRow) else
                {"run_id": v.status.run_id, "status": v.status.status, "started_at": v.status.started_at,
                 "finished_at": v.status.finished_at,
                 "duration_sec": (v.status.finished_at - v.status.started_at)
                 if v.status.finished_at and v.status.started_at else None,
                 "params": v.status.params, "interrupted": v.status.interrupted, "problems": v.problems,
                 "path": v.path} for v in items]
        sys.stdout.write(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
        return EXIT_OK
    rows = [("RUN ID", "STATUS", "STARTED", "DURATION", "PARAMS")]
    for v in items:
        if isinstance(v, TickRow):  # a tick that did not become a run: its note where params go
            rows.append((v.run_id or "-", v.status, _fmt_time(v.tick), "-", v.note()))
            continue
        st = v.status
        took = (st.finished_at or time.time()) - st.started_at if st.started_at else None
        label = st.status + (" (interrupted)" if st.interrupted else "") + (" (damaged)" if v.problems else "")
        rows.append((st.run_id, label, _fmt_time(st.started_at), _fmt_duration(took), " ".join(st.params)))
    if len(rows) == 1:
        sys.stderr.write(f"dagu history: no runs of {name!r}\n")
        return EXIT_OK
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    sys.stdout.write("".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[4] + "\n"
                             for r in rows).replace("  \n", "\n"))
    return EXIT_OK


def logs_cmd(args: argparse.Namespace) -> int:
    name = dag_name_of(args.file)
    view = _view(name, args.run_id)
    run_path = view.path
    printed: dict[str, int] = {}

    def paths(status: Any) -> list[tuple[str, str]]:
        out = []
        for s in [*status.steps.values(), *status.handlers.values()]:
            if args.step and s.id != args.step:
                continue
            for a in s.attempts:
                path = a.stderr if args.stderr else a.stdout
                if path:
                    label = f"{'handler ' + s.handler if s.handler else s.id} (attempt {a.number})"
                    out.append((label, path))
        return out

    def emit(status: Any, headers: bool) -> None:
        for label, path in paths(status):
            try:
                with open(path, "rb") as fh:
                    fh.seek(printed.get(path, 0))
                    data = fh.read()
            except OSError:
                continue
            if not data and path in printed:
                continue
            if headers and path not in printed:
                sys.stdout.write(f"==> {label}: {path} <==\n")
            printed[path] = printed.get(path, 0) + len(data)
            sys.stdout.write(data.decode("utf-8", "replace"))
            sys.stdout.flush()

    if args.step and args.step not in view.status.steps and not any(
            h.id == args.step for h in view.status.handlers.values()):
        raise CommandFailed(f"run {view.status.run_id} has no step {args.step!r} "
                            f"(steps: {', '.join(view.status.steps)})")
    headers = args.step is None
    emit(view.status, headers)
    if args.follow:
        from dagu.store.runs import RunDir

        run = RunDir(run_path)
        while True:
            current = run.read(repair=False)
            emit(current.status, headers)
            if not current.live:
                emit(run.read().status, headers)
                break
            time.sleep(0.2)
    return EXIT_OK


def cleanup_cmd(args: argparse.Namespace) -> int:
    """Apply retention now: a DAG's age/count limits (FILE) and/or the data dir's size cap (--max-size)."""
    from dagu.store import retention
    from dagu.process.limits import format_size
    from dagu.store.runs import Store, StoreError

    store = Store(_home())
    report = retention.Report()
    name = dag_name_of(args.file) if args.file else None
    try:
        if name is not None and (args.retention_days is not None or args.retention_runs is not None):
            retention.expire_dag(store, name, args.retention_days, args.retention_runs, dry_run=args.dry_run,
                                 report=report)
        if args.max_size is not None:
            retention.cap_size(store, args.max_size, dry_run=args.dry_run, report=report)
    except (OSError, StoreError) as exc:
        raise CommandFailed(f"cleanup stopped after {len(report.removed)} run(s): {exc}") from None
    verb = "would delete" if args.dry_run else "deleted"
    for r in report.removed:
        via = f", with {r.parent}" if r.parent else ""
        sys.stdout.write(f"{verb} {r.dag}/{r.run_id} ({r.reason}: {r.status}, finished {_fmt_time(r.finished_at)}, "
                         f"{format_size(r.bytes)}{via})\n")
    top = [r for r in report.removed if r.parent is None]
    scope = f" of {name!r}" if name is not None and args.max_size is None else ""
    sys.stderr.write(f"dagu cleanup: {verb} {len(top)} run(s){scope}, {format_size(report.bytes)}"
                     + (f"; finished {report.tombstones} interrupted deletion(s)" if report.tombstones else "")
                     + ("" if args.dry_run or not top else f"; see {os.path.join(store.home, retention.LOG_FILE)}")
                     + "\n")
    return EXIT_OK


def exec_cmd(args: argparse.Namespace) -> int:
    import shlex

    from dagu.engine import runner
    from dagu.spec.plan import PLAN_VERSION, Dag, Plan, Step

    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise CommandFailed("give the command after --, e.g. dagu exec -- rsync -a src/ dst/")
    name = args.name or "exec-" + re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.basename(argv[0]))[:40]
    cwd = os.path.abspath(args.working_dir or os.getcwd())
    step = Step(id="exec", name="exec", command=([shlex.join(argv)],))
    dag = Dag(name=name, type="chain", base_dir=cwd, file="<dagu exec>", steps=(step,), order=("exec",))
    from dagu import __version__

    plan = Plan(plan_version=PLAN_VERSION, compiler=f"dagu {__version__}", source="<dagu exec>", source_sha256="",
                root=name, dags={name: dag})
    return _run_outcome(lambda: runner.start(plan, None, [], args.run_id, _home(), os.environ), args.quiet)


def enqueue_cmd(args: argparse.Namespace, load: Callable[[str], tuple[Any, str | None]]) -> int:
    from dagu.queues.queue import Queues
    from dagu.engine.runner import new_run_id
    from dagu.store.runs import Store, StoreError

    plan, extra = load(args.file)
    if plan is None:
        sys.stderr.write(extra or "")
        return EXIT_FAILED
    words = _words(args.params, args.rest)
    try:
        item = Queues(Store(_home())).enqueue(plan, None, words, args.run_id or new_run_id())
    except StoreError as exc:
        raise CommandFailed(str(exc)) from None
    sys.stdout.write(f"{item.run_id}\n")
    sys.stderr.write(f"dagu enqueue: run {item.run_id} of {item.dag!r} is queued in {item.queue!r}\n")
    return EXIT_OK


def dequeue_cmd(args: argparse.Namespace) -> int:
    from dagu.queues.queue import Queues
    from dagu.store.runs import Store

    name = dag_name_of(args.file)
    if not Queues(Store(_home())).dequeue(name, args.run_id):
        raise CommandFailed(f"run {args.run_id!r} of {name!r} is not waiting in a queue")
    sys.stderr.write(f"dagu dequeue: removed run {args.run_id} of {name!r} from its queue\n")
    return EXIT_OK


def queue_cmd(args: argparse.Namespace) -> int:
    from dagu.queues.queue import Queues, dispatch
    from dagu.store.runs import Store
    from dagu.engine.run_context import self_argv

    store = Store(_home())
    if args.action == "list":
        for item in Queues(store).items():
            sys.stdout.write(f"{item.queue}\t{item.dag}\t{item.run_id}\t{_fmt_time(item.enqueued_at)}\n")
        return EXIT_OK
    started = dispatch(store, self_argv(), os.environ, once=args.once, poll_sec=args.poll)
    sys.stderr.write(f"dagu queue: started {started} run(s)\n")
    return EXIT_OK


def start_queued_cmd(args: argparse.Namespace) -> int:
    from dagu.engine import runner

    dag, _, run_id = args.target.partition("/")
    if not run_id:
        raise CommandFailed("give DAG/RUN_ID")
    return _run_outcome(lambda: runner.start_queued(dag, run_id, _home(), os.environ), args.quiet)


def decide_cmd(args: argparse.Namespace, decision: str) -> int:
    import getpass

    from dagu.engine import runner

    inputs: dict[str, str] = {}
    for item in getattr(args, "input", []):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CommandFailed(f"-i {item!r}: write KEY=VALUE")
        inputs[key] = value
    try:
        by = getpass.getuser()
    except (KeyError, OSError):
        by = "unknown"
    return _run_outcome(lambda: runner.decide(args.run_id, args.step, decision, inputs,
                                              getattr(args, "reason", None), by, _home(), os.environ,
                                              dag_name=args.dag), args.quiet)
