"""The `dagu` command: parse arguments, call the package, print, choose the exit code.

This is the only place that prints errors and picks exit codes (click's
habit): 0 success, 1 a workflow is invalid or a run failed, 2 usage error,
3 an internal error.  No traceback reaches a user unless `--debug` is given.
Modules are imported inside the command that needs them, argparse included, and
only the parser of the command being run is built: `dagu --version` imports
nothing but this file, and `dagu validate` nothing of the runtime.
"""

from __future__ import annotations

import os
import sys

from dagu import __version__

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (2 ms of `dagu --version`)
if TYPE_CHECKING:
    import argparse
    from typing import Any, Sequence

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


class UsageError(Exception):
    """Bad command-line input: exit 2 with the message."""


def _positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def _size(text: str) -> int:
    """A size such as 500M, 2GiB or 1048576 (bytes); every unit is binary, as in `limits:`."""
    import argparse

    from dagu.process.limits import parse_size

    try:
        value = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} leaves no room for any run; give a size such as 2GiB")
    return value


class _Unbuilt:
    """The parser of a command that is not being run: its arguments are not added.

    Building all 26 sub-parsers took longer than the rest of `dagu validate`'s start-up."""

    def add_argument(self, *args: object, **kwargs: object) -> None:
        return None


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `dagu` parser; with `command`, only that command's sub-parser is complete
    (None: every one, for `dagu --help` and for a word that is no command)."""
    import argparse

    p = argparse.ArgumentParser(prog="dagu", description="Compile, check and run Dagu v2 workflows.")
    p.add_argument("--version", action="version", version=f"dagu {__version__}")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks of internal errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, **kwargs: object) -> "argparse.ArgumentParser | _Unbuilt":
        if command is not None and name != command:
            return _Unbuilt()
        return sub.add_parser(name, **kwargs)

    c = add("compile", help="check workflow files and write their plans")
    c.add_argument("paths", nargs="+", metavar="PATH", help="workflow files, or directories of *.yaml/*.yml")
    c.add_argument("-o", "--output", metavar="OUT",
                   help="plan file (one input), directory, or - for stdout (default: $DAGU_HOME/plans)")
    c.add_argument("--format", choices=("text", "json", "github", "sarif"), default="text",
                   help="how to print diagnostics (default: text)")
    c.add_argument("--strict", action="store_true", help="treat warnings as errors")
    c.add_argument("--explain-schedule", action="store_true",
                   help="write no plans; list each schedule's zone, next fire times (local and UTC) and "
                        "what the next daylight-saving change does to it")
    c.add_argument("-n", type=int, default=5, metavar="N", dest="count",
                   help="--explain-schedule: how many fire times per expression (default 5)")

    v = add("validate", help="check workflow files, write nothing")
    v.add_argument("paths", nargs="+", metavar="PATH")
    v.add_argument("--format", choices=("text", "json", "github", "sarif"), default="text")
    v.add_argument("--strict", action="store_true", help="treat warnings as errors")

    d = add("dry", help="show the order a workflow would run in; execute nothing")
    d.add_argument("file", metavar="FILE")
    d.add_argument("-p", "--params", default=None, help='parameters, e.g. "A=1 B=2"')
    d.add_argument("rest", nargs="*", metavar="-- PARAMS", help="parameters after --")

    s = add("start", help="run a workflow in the foreground (compiles it first)")
    s.add_argument("file", metavar="FILE", help="a workflow file, or a plan file (*.json)")
    s.add_argument("--run-id", default=None, help="id for this run (default: time-sortable unique id)")
    s.add_argument("-p", "--params", default=None, help='parameters, e.g. "A=1 B=2"')
    s.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    s.add_argument("--dag", default=None, help=argparse.SUPPRESS)  # which DAG of a plan (sub-DAG runs)
    s.add_argument("--parent", default=None, help=argparse.SUPPRESS)  # "dag/run" of the calling run
    s.add_argument("--missed", default=None, help=argparse.SUPPRESS)  # the scheduler records missed ticks
    s.add_argument("rest", nargs="*", metavar="-- PARAMS", action=_after_dash_only(), help="parameters after --")

    r = add("retry", help="re-run the failed, aborted and unrun steps of a run")
    r.add_argument("file", metavar="FILE", help="the workflow file (or its DAG name)")
    r.add_argument("--run-id", required=True)
    r.add_argument("--step", default=None, help="run only this step again; every other step keeps its result")
    r.add_argument("-q", "--quiet", action="store_true")

    st = add("stop", help="stop the active runs of a workflow, or one run (SIGTERM to their supervisors)")
    st.add_argument("file", metavar="FILE", help="the workflow file (or its DAG name)")
    st.add_argument("--run-id", default=None, help="only this run (default: every active run of the DAG)")

    rs = add("restart", help="stop the active runs of a workflow, then start it again with the latest "
                                        "run's params")
    rs.add_argument("file", metavar="FILE")
    rs.add_argument("--run-id", default=None, help="id for the new run")
    rs.add_argument("-q", "--quiet", action="store_true")

    ss = add("status", help="show a run: each step's status, attempts, exit and resource use",
                        description="Show a run, or with --scheduler the scheduler: exit 0 when a scheduler is "
                                    "alive and looping, 1 when none is running or it is stalled.")
    ss.add_argument("file", metavar="FILE", nargs="?", help="the workflow file (or its DAG name)")
    ss.add_argument("--scheduler", action="store_true",
                    help="show the scheduler instead: alive or not, next tick per DAG, files that do not "
                         "compile, ticks missed while it is down (exit 0 alive, 1 not running or stalled)")
    ss.add_argument("--run-id", default=None, help="default: the latest run")
    ss.add_argument("--format", choices=("text", "json"), default="text")

    h = add("history", help="list the runs of a workflow, newest first")
    h.add_argument("file", metavar="FILE", help="the workflow file (or its DAG name)")
    h.add_argument("--format", choices=("text", "json"), default="text")
    h.add_argument("-n", "--limit", type=int, default=None, help="show at most N runs")

    lg = add("logs", help="print the logs of a run's steps")
    lg.add_argument("file", metavar="FILE", help="the workflow file (or its DAG name)")
    lg.add_argument("--run-id", default=None, help="default: the latest run")
    lg.add_argument("--step", default=None, help="only this step (default: every step, in order)")
    lg.add_argument("--stderr", action="store_true", help="print stderr instead of stdout")
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing until the run finishes")

    cl = add("cleanup", help="delete old finished runs now: by age or count (of FILE), or by total size")
    cl.add_argument("file", metavar="FILE", nargs="?", help="the workflow file (or its DAG name)")
    cl.add_argument("--retention-days", type=float, default=None, metavar="N",
                    help="delete FILE's finished runs older than N days")
    cl.add_argument("--retention-runs", type=_positive_int, default=None, metavar="N",
                    help="keep only FILE's newest N finished runs")
    cl.add_argument("--max-size", type=_size, default=None, metavar="SIZE",
                    help="delete the oldest finished runs of every DAG until all runs take at most SIZE (e.g. 2GiB)")
    cl.add_argument("--dry-run", action="store_true", help="list what would be deleted")

    x = add("exec", help="run one command as a recorded run: dagu exec [--name N] -- CMD ARGS...")
    x.add_argument("--name", default=None, help="DAG name to record the run under (default: exec-COMMAND)")
    x.add_argument("--run-id", default=None)
    x.add_argument("--working-dir", default=None, help="default: the current directory")
    x.add_argument("-q", "--quiet", action="store_true")
    x.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD ...")

    eq = add("enqueue", help="put a run in the DAG's queue (started by `dagu queue run` or the scheduler)")
    eq.add_argument("file", metavar="FILE")
    eq.add_argument("--run-id", default=None)
    eq.add_argument("-p", "--params", default=None)
    eq.add_argument("rest", nargs="*", metavar="-- PARAMS")

    dq = add("dequeue", help="take a waiting run out of its queue (it is recorded as aborted)")
    dq.add_argument("file", metavar="FILE", help="the workflow file (or its DAG name)")
    dq.add_argument("--run-id", required=True)

    qu = add("queue", help="list the queues, or run them: dagu queue list | dagu queue run [--once]")
    qu.add_argument("action", choices=("list", "run"))
    qu.add_argument("--once", action="store_true", help="run: exit when the queues are empty")
    qu.add_argument("--poll", type=float, default=1.0, metavar="SEC", help="run: how often to look (default 1)")

    sd = add("scheduler", help="start runs when their schedules fire, and dispatch the queues")
    sd.add_argument("--dags", default=None, metavar="DIR", help="the DAGs directory (default: $DAGU_HOME/dags)")

    sa = add("start-all", help="run the background services: for now the scheduler and its queue dispatcher")
    sa.add_argument("--dags", default=None, metavar="DIR", help="the DAGs directory (default: $DAGU_HOME/dags)")

    sv = add("server", help="serve the web UI and its JSON API (http://127.0.0.1:8080 by default)")
    sv.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    sv.add_argument("--port", type=int, default=8080, help="the port (default 8080; 0 picks a free one)")
    sv.add_argument("--dags", default=None, metavar="DIR", help="the DAGs directory (default: $DAGU_HOME/dags)")

    # Internal commands, run by the launcher (launch/base.py request_argv): no `help=`, so
    # argparse lists them nowhere in `dagu --help`.
    add("zygote")  # the scheduler's run forker (launch/local.py)
    sq = add("start-queued")  # the supervisor of a queued run
    sq.add_argument("target", metavar="DAG/RUN_ID")
    sq.add_argument("-q", "--quiet", action="store_true")
    rm = add("resume")  # the supervisor of a run continued after an approval decision
    rm.add_argument("target", metavar="DAG/RUN_ID")
    rm.add_argument("-q", "--quiet", action="store_true")

    ap = add("approve", help="approve a step waiting for approval; its run continues in its own process")
    ap.add_argument("run_id", metavar="RUN_ID")
    ap.add_argument("step", metavar="STEP")
    ap.add_argument("-i", "--input", action="append", default=[], metavar="KEY=VALUE",
                    help="a value the step's approval asks for (repeatable)")
    ap.add_argument("--dag", default=None, help="the DAG, when the run id is not unique")
    ap.add_argument("-q", "--quiet", action="store_true")
    ap.add_argument("--wait", action="store_true", help="wait until the run stops running and report it "
                                                      "(exit 0: succeeded or waiting again)")

    rj = add("reject", help="reject a step waiting for approval; the run then fails")
    rj.add_argument("run_id", metavar="RUN_ID")
    rj.add_argument("step", metavar="STEP")
    rj.add_argument("--reason", default=None)
    rj.add_argument("--dag", default=None, help="the DAG, when the run id is not unique")
    rj.add_argument("-q", "--quiet", action="store_true")
    rj.add_argument("--wait", action="store_true", help="wait until the run stops running and report it "
                                                      "(exit 0: succeeded or waiting again)")

    pb = add("push-back", help="send a waiting step back: its approval.rewind_to step (default: "
                                          "itself) and everything after it run again, then it waits again")
    pb.add_argument("run_id", metavar="RUN_ID")
    pb.add_argument("step", metavar="STEP")
    pb.add_argument("-i", "--input", action="append", default=[], metavar="KEY=VALUE",
                    help="feedback for the steps that run again, as variables (repeatable)")
    pb.add_argument("--reason", default=None)
    pb.add_argument("--dag", default=None, help="the DAG, when the run id is not unique")
    pb.add_argument("-q", "--quiet", action="store_true")
    pb.add_argument("--wait", action="store_true", help="wait until the run stops running and report it "
                                                      "(exit 0: succeeded or waiting again)")

    sc = add("schema", help="print a JSON Schema (dag: workflow files, plan: plan files)")
    sc.add_argument("which", nargs="?", choices=("dag", "plan"), default="dag")

    e = add("explain", help="explain a diagnostic code")
    e.add_argument("code", nargs="?", help="a code such as unknown-depends (omit to list all)")

    m = add("migrate", help="rewrite Dagu 1.x spellings to v2 and print the diff")
    m.add_argument("paths", nargs="+", metavar="FILE", help="workflow files, or directories of *.yaml/*.yml")
    m.add_argument("--write", action="store_true", help="edit the files in place (comments and layout are kept)")
    m.add_argument("--check", action="store_true", help="exit 1 when a file would change (for CI)")
    return p


def _collect(paths: Sequence[str], dags_only: bool = True) -> list[str]:
    """Files to compile: files as given, directories expanded to their YAML files.

    `dags_only`: leave out a directory's base config (base.yaml), which is merged into
    its DAGs rather than compiled (migrate still rewrites it)."""
    skip = _never
    if dags_only:
        from dagu.compiler.base_config import is_base_config

        skip = is_base_config
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(
                os.path.join(path, f) for f in os.listdir(path)
                if f.endswith((".yaml", ".yml")) and os.path.isfile(os.path.join(path, f))
                and not skip(os.path.join(path, f))
            )
            if not found:
                raise UsageError(f"{path}: no *.yaml or *.yml files in this directory")
            files.extend(found)
        elif os.path.exists(path):
            files.append(path)
        else:
            raise UsageError(f"{path}: no such file or directory")
    return files


def _never(path: str) -> bool:
    return False


def _check(args: argparse.Namespace, write: bool) -> int:
    from dagu.compiler.pipeline import compile_file
    from dagu.compiler.render import render
    from dagu.spec.plan import dump_plan

    files = _collect(args.paths)
    out = getattr(args, "output", None) if write else None
    if write and out is None:
        from dagu.settings import dagu_home

        out = os.path.join(dagu_home(), "plans")
    if write:
        from dagu.store.runs import StoreError, write_atomic
    single_file_out = out not in (None, "-") and len(files) == 1 and out.endswith(".json")
    to_stdout = out == "-"
    if to_stdout and len(files) != 1:
        raise UsageError("-o - writes one plan to stdout: give exactly one file")
    diagnostics, written = [], []
    seen = set()
    failed = False
    for f in files:
        result = compile_file(f)
        for d in result.diagnostics:
            key = (d.file, d.line, d.col, d.code, d.message)
            if key not in seen:
                seen.add(key)
                diagnostics.append(d)
        bad = not result.ok or (args.strict and result.diagnostics)
        failed = failed or bad
        if write and result.plan is not None and not bad:
            text = dump_plan(result.plan)
            if to_stdout:
                sys.stdout.write(text)
                continue
            target = out if single_file_out else os.path.join(out, f"{result.plan.root}.plan.json")
            try:
                write_atomic(target, text, make_dirs=True)
            except StoreError as exc:
                raise _cli_run().CommandFailed(str(exc)) from None
            written.append((f, target))
    report = render(args.format, diagnostics, len(files))
    stream = sys.stderr if to_stdout else sys.stdout
    if args.format == "text" and written and not to_stdout:
        report = "".join(f"{src} -> {dst}\n" for src, dst in written) + report
    stream.write(report)
    return EXIT_INVALID if failed else EXIT_OK


def _explain_schedule(args: argparse.Namespace) -> int:
    """When each schedule fires (schedule/explain.py); compiles, writes no plan."""
    import json
    import time

    from dagu.compiler.pipeline import compile_file
    from dagu.compiler.render import render
    from dagu.schedule.explain import explain_plan, render_text

    if args.count < 1:
        raise UsageError(f"-n {args.count}: give at least 1")
    failed, out = False, []
    now = time.time()
    for f in _collect(args.paths):
        result = compile_file(f)
        if not result.ok:
            failed = True
            sys.stderr.write(render("text", result.diagnostics, 1))
            continue
        explained = explain_plan(result.plan, now, args.count)
        if args.format == "json":
            out.append({"file": f, "schedules": [x.to_dict() for x in explained]})
        else:
            sys.stdout.write(render_text(f, explained))
    if args.format == "json":
        sys.stdout.write(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    return EXIT_INVALID if failed else EXIT_OK


# What every run imports (loaded by the zygote before it forks), and what a run of command steps
# imports lazily (loaded if present).
_ZYGOTE_PRELOAD = ("dagu.executors.command", "dagu.settings", "dagu.store.disk_usage", "dagu.store.retention")


def _zygote() -> int:
    """`dagu zygote`: the scheduler's run forker; its forked children run `main` (handed in:
    launch/ sits below the CLI and never imports it)."""
    from dagu.engine import runner  # noqa: F401 - loaded once here, shared by every forked run
    from dagu.launch.local import zygote_main
    from dagu import cli_format, cli_run  # noqa: F401
    from dagu.service import control, dags, plan_cache, runs  # noqa: F401

    zygote_main(main, _ZYGOTE_PRELOAD)
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    if args.scheduler:
        return _cli_run().scheduler_status_cmd(args)
    if args.file is None:
        raise UsageError("give a workflow file or DAG name, or --scheduler")
    return _cli_run().status_cmd(args)


def _dry(args: argparse.Namespace) -> int:
    from dagu.engine.dry import DryError, describe
    from dagu.service.dags import load_for_run

    loaded = load_for_run(args.file)
    if loaded.plan is None:
        sys.stderr.write(loaded.diagnostics or "")
        return EXIT_INVALID
    try:
        report = describe(loaded.plan, args.params, args.rest, os.environ)
    except DryError as exc:
        raise _cli_run().CommandFailed(str(exc)) from None
    sys.stdout.write(report)
    return EXIT_OK


def _schema(args: argparse.Namespace) -> int:
    from importlib import resources

    sys.stdout.write((resources.files("dagu.spec") / f"{args.which}.schema.json").read_text(encoding="utf-8"))
    return EXIT_OK


def _explain(args: argparse.Namespace) -> int:
    from dagu.compiler.codes import CODES

    if args.code is None:
        for code in CODES.values():
            sys.stdout.write(f"{code.name:24} {code.severity:8} {code.explanation}\n")
        return EXIT_OK
    code = CODES.get(args.code)
    if code is None:
        raise UsageError(f"unknown code {args.code!r}; `dagu explain` lists them")
    sys.stdout.write(f"{code.name} ({code.severity})\n  {code.explanation}\n")
    return EXIT_OK


def _scheduler(args: argparse.Namespace) -> int:
    """Run the scheduler in the foreground until SIGTERM/SIGINT (a standby while another is active)."""
    import signal
    import time

    from dagu.service.scheduling import serve_scheduler

    stopping: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: stopping.append(signum))

    def log(line: str) -> None:
        sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} dagu scheduler: {line}\n")
        sys.stderr.flush()

    from dagu.settings import dagu_home

    home = dagu_home()
    return serve_scheduler(home, args.dags or os.path.join(home, "dags"), os.environ,
                           stop=lambda: bool(stopping), log=log)


def _server(args: argparse.Namespace) -> int:
    """`dagu server`: parse -> create_app -> serve (Flask and waitress are loaded only here)."""
    import ipaddress

    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    if not loopback:
        raise UsageError(f"--host {args.host}: the web UI has no users yet, so it serves only this host "
                         "(127.0.0.1); reach it from elsewhere through an SSH tunnel (ssh -L 8080:127.0.0.1:8080)")
    from dagu.settings import dagu_home
    from dagu.web.app import create_app
    from dagu.web.server import serve

    home = dagu_home()
    app = create_app({"DAGU_HOME": home, "DAGS_DIR": args.dags or os.path.join(home, "dags")})

    def ready(host: str, port: int) -> None:
        sys.stderr.write(f"dagu server: serving http://{host}:{port}/ (DAGs: {app.extensions['dagu'].dags_dir}, "
                         f"data: {home})\n")
        sys.stderr.flush()

    serve(app, args.host, args.port, ready)
    return EXIT_OK


def _cleanup(args: argparse.Namespace) -> int:
    if args.file is None and (args.retention_days is not None or args.retention_runs is not None):
        raise UsageError("--retention-days and --retention-runs apply to one DAG: give its FILE or name")
    if args.retention_days is None and args.retention_runs is None and args.max_size is None:
        raise UsageError("say what to delete: --retention-days N, --retention-runs N (with FILE) "
                         "or --max-size SIZE (all DAGs)")
    if args.retention_days is not None and args.retention_days < 0:
        raise UsageError(f"--retention-days {args.retention_days:g}: must not be negative")
    return _cli_run().cleanup_cmd(args)


def _migrate(args: argparse.Namespace) -> int:
    """Print the diff that takes each file from Dagu 1.x to v2; --write applies it, --check fails on it."""
    from dagu.compiler.migrate import migrate_file, write_migration
    from dagu.compiler.render import render

    files = _collect(args.paths, dags_only=False)
    changed, unreadable = [], []
    for f in files:
        migration = migrate_file(f)
        if migration.diagnostics:
            unreadable.extend(migration.diagnostics)
            continue
        sys.stdout.write(migration.diff())
        sys.stderr.write("".join(note + "\n" for note in migration.notes))
        if migration.changed:
            changed.append(f)
            if args.write:
                write_migration(migration)
    if unreadable:
        sys.stderr.write(render("text", unreadable, len(files)))
    verb = "rewrote" if args.write else "would rewrite"
    sys.stderr.write(f"dagu migrate: {verb} {len(changed)} of {len(files)} file{'' if len(files) == 1 else 's'}\n")
    if unreadable or (args.check and changed):
        return EXIT_INVALID
    return EXIT_OK


def _cli_run():
    """cli_run.py, imported by the commands that need it (it loads the settings and the service)."""
    from dagu import cli_run

    return cli_run


COMMANDS = {
    "compile": lambda a: _explain_schedule(a) if a.explain_schedule else _check(a, write=True),
    "validate": lambda a: _check(a, write=False),
    "dry": _dry,
    "start": lambda a: _cli_run().start_cmd(a),
    "retry": lambda a: _cli_run().retry_cmd(a),
    "stop": lambda a: _cli_run().stop_cmd(a),
    "restart": lambda a: _cli_run().restart_cmd(a),
    "status": _status,
    "history": lambda a: _cli_run().history_cmd(a),
    "logs": lambda a: _cli_run().logs_cmd(a),
    "cleanup": _cleanup,
    "exec": lambda a: _cli_run().exec_cmd(a),
    "enqueue": lambda a: _cli_run().enqueue_cmd(a),
    "dequeue": lambda a: _cli_run().dequeue_cmd(a),
    "queue": lambda a: _cli_run().queue_cmd(a),
    "start-queued": lambda a: _cli_run().start_queued_cmd(a),
    "resume": lambda a: _cli_run().resume_cmd(a),
    "zygote": lambda a: _zygote(),
    "scheduler": _scheduler,
    "start-all": _scheduler,
    "server": _server,
    "approve": lambda a: _cli_run().decide_cmd(a, "approve"),
    "reject": lambda a: _cli_run().decide_cmd(a, "reject"),
    "push-back": lambda a: _cli_run().decide_cmd(a, "push_back"),
    "schema": _schema,
    "explain": _explain,
    "migrate": _migrate,
}


def _after_dash_only() -> "type[argparse.Action]":
    """The action of `start`'s params: built when the start parser is (argparse loads lazily)."""
    import argparse

    class _AfterDashOnly(argparse.Action):
        """Params come only after `--` (as upstream): `dagu start FILE extra words` is a usage error
        (exit 2, with the command's usage line), not words silently taken as params."""

        def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                     option_string: str | None = None) -> None:
            if values:
                parser.error(f"unexpected {' '.join(values)!r}: give params after `--` (dagu start FILE -- A=1)")
            setattr(namespace, self.dest, list(values or []))

    return _AfterDashOnly


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--version"]:  # answered before argparse is even imported
        sys.stdout.write(f"dagu {__version__}\n")
        return EXIT_OK
    command = next((word for word in argv if not word.startswith("-")), None)
    parser = _parser(command if command in COMMANDS else None)
    debug = "--debug" in argv
    # Words after the first `--` are params (or exec's command) wherever the options are,
    # so `dagu start FILE --run-id X -- A=1` works as it does upstream.
    tail: list[str] | None = None
    if "--" in argv:
        cut = argv.index("--")
        argv, tail = argv[:cut], argv[cut + 1:]
    try:
        args = parser.parse_args(argv)
        if tail is not None:
            if hasattr(args, "rest"):
                args.rest = [*args.rest, *tail]
            elif hasattr(args, "argv"):
                args.argv = [*args.argv, *tail]
            else:
                parser.parse_args([*argv, "--", *tail])  # reports the stray words as argparse does
    except SystemExit as exc:  # argparse: --help/--version exit 0, usage errors exit 2
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # the one boundary: every error becomes one line and an exit code
        code = _exit_code_of(exc)
        if code is None:
            if debug:
                raise
            sys.stderr.write(f"dagu: internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)\n")
            return EXIT_INTERNAL
        sys.stderr.write(f"dagu {args.command}: error: {exc}\n")
        return code


def _exit_code_of(exc: Exception) -> int | None:
    """2 for a wrong request, 1 for one that cannot be done, None for an internal error.
    (The exception classes are imported here, on the error path, to keep start-up small.)"""
    from dagu.cli_run import CommandFailed
    from dagu.service import BadRequest, ServiceError
    from dagu.spec.names import BadName

    if isinstance(exc, (UsageError, BadRequest, BadName)):
        return EXIT_USAGE
    if isinstance(exc, (CommandFailed, ServiceError)):
        return EXIT_INVALID
    return None
