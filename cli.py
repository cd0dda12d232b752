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
# commands that serve until stopped: they keep the collector's usual pace from the start (startup.py)
LONG_LIVED = frozenset({"scheduler", "server", "start-all", "worker", "zygote"})


class UsageError(Exception):
    """Bad command-line input: exit 2 with the message."""


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


def _check_listen(host: str, port: int, home: str) -> bool:
    """Whether `host` is loopback; refuses any other host while no user is configured, and a port
    outside 0-65535 (`dagu server` and `dagu start-all` refuse alike, before serving)."""
    import ipaddress

    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: give a port from 1 to 65535 (or 0 for a free one)")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    from dagu.service.users import list_accounts

    if not loopback and not list_accounts(home):
        raise UsageError(f"--host {host}: no user is configured, so the web UI serves only this host "
                         "(127.0.0.1); add one first with `dagu user add NAME --role admin` (then every page "
                         "needs a login), or reach it through an SSH tunnel (ssh -L 8080:127.0.0.1:8080)")
    return loopback


def _start_all(args: argparse.Namespace) -> int:
    """`dagu start-all`: the scheduler and the server as supervised children (service/start_all.py)."""
    from dagu.engine.run_context import self_argv
    from dagu.service.start_all import start_all
    from dagu.settings import dagu_home

    _check_listen(args.host, args.port, dagu_home())
    return start_all(self_argv(), args.host, args.port, args.dags, os.environ)


def _server(args: argparse.Namespace) -> int:
    """`dagu server`: parse -> create_app -> serve (Flask and waitress are loaded only here)."""
    from dagu.settings import dagu_home

    home = dagu_home()
    loopback = _check_listen(args.host, args.port, home)
    from dagu.web.app import create_app
    from dagu.web.server import CannotListen, serve

    app = create_app({"DAGU_HOME": home, "DAGS_DIR": args.dags or os.path.join(home, "dags"),
                      "LOOPBACK_ONLY": loopback})

    def ready(host: str, port: int) -> None:
        sys.stderr.write(f"dagu server: serving http://{host}:{port}/ (DAGs: {app.extensions['dagu'].dags_dir}, "
                         f"data: {home})\n")
        sys.stderr.flush()

    try:
        serve(app, args.host, args.port, ready)
    except CannotListen as exc:  # exit 2: start-all does not restart a server that cannot listen
        raise UsageError(str(exc)) from None
    return EXIT_OK


def _read_password(name: str) -> str:
    """The new password: typed twice at a terminal (not echoed), else the first line of stdin."""
    if sys.stdin.isatty():
        import getpass

        first = getpass.getpass(f"password for {name}: ")
        if getpass.getpass("again: ") != first:
            raise UsageError("the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _accounts(args: argparse.Namespace) -> int:
    """`dagu user ...` and `dagu token ...`: parse -> service/users.py -> print."""
    import time

    from dagu.service import users
    from dagu.settings import dagu_home

    home = dagu_home()
    kind = args.command
    if args.action == "list":
        rows = [a for a in users.list_accounts(home) if a.kind == kind]
        for a in rows:
            sys.stdout.write(f"{a.name:24} {a.role:9} {time.strftime('%Y-%m-%d %H:%M', time.localtime(a.created_at))}\n")
        if not rows:
            sys.stderr.write(f"no {kind}s (dagu {kind} {'add' if kind == 'user' else 'create'} NAME --role ROLE)\n")
        return EXIT_OK
    if args.name is None:
        raise UsageError(f"dagu {kind} {args.action}: give the {kind}'s NAME")
    if args.action in ("add", "create") and args.role is None:
        raise UsageError(f"dagu {kind} {args.action}: give --role admin, operator or viewer")
    if args.action == "add":
        users.check_name(args.name)
        users.add_user(home, args.name, _read_password(args.name), args.role, replace=args.replace)
        sys.stderr.write(f"dagu user: {args.name} ({args.role}) saved in {os.path.join(home, 'users.json')}\n")
    elif args.action == "remove":
        users.remove_user(home, args.name)
        sys.stderr.write(f"dagu user: removed {args.name}\n")
    elif args.action == "create":
        token = users.create_token(home, args.name, args.role)
        sys.stdout.write(token + "\n")
        sys.stderr.write(f"dagu token: {args.name} ({args.role}); shown only now: send it as "
                         "`Authorization: Bearer <token>`\n")
    elif args.action == "revoke":
        users.revoke_token(home, args.name)
        sys.stderr.write(f"dagu token: revoked {args.name}\n")
    else:
        raise UsageError(f"dagu {kind}: {args.action} is not a {kind} action")
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
    "start-all": _start_all,
    "server": _server,
    "user": _accounts,
    "token": _accounts,
    "worker": lambda a: _cli_run().worker_cmd(a),
    "workers": lambda a: _cli_run().workers_cmd(a),
    "approve": lambda a: _cli_run().decide_cmd(a, "approve"),
    "reject": lambda a: _cli_run().decide_cmd(a, "reject"),
    "push-back": lambda a: _cli_run().decide_cmd(a, "push_back"),
    "schema": _schema,
    "explain": _explain,
    "migrate": _migrate,
}


def run() -> None:
    """The `dagu` command: `main`, then an exit without the interpreter's teardown.

    Tearing down every module and collecting every object costs 15-30 ms at the end of each
    command (a fifth of a `dagu validate`), and none of it matters once a command is done:
    what it wrote is closed, and synced where that matters.  What a normal exit does first
    still happens: the exit handlers run and the standard streams are flushed.  While a
    non-daemon thread still runs (it may hold work a normal exit would wait for), the exit is
    the normal one."""
    code = main()
    threading = sys.modules.get("threading")
    if threading is not None and any(thread.is_alive() and not thread.daemon and thread is not threading.main_thread()
                                     for thread in threading.enumerate()):
        sys.exit(code)
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            pass
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--version"]:  # answered before argparse is even imported
        sys.stdout.write(f"dagu {__version__}\n")
        return EXIT_OK
    command = next((word for word in argv if not word.startswith("-")), None)
    from dagu import startup

    startup.defer_modules()
    if command not in LONG_LIVED:
        startup.setting_up()
    from dagu.cli_parser import build_parser

    parser = build_parser(command if command in COMMANDS else None)
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
