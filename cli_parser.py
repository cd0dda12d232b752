"""The `dagu` command line's grammar: one argparse sub-parser per command, built lazily.

Kept apart from cli.py (which runs the commands and is the one error boundary) so each
file has one job.  Only the sub-parser of the command being run is built: building all
of them took longer than the rest of `dagu validate`'s start-up.
"""

from __future__ import annotations

from dagu import __version__

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import argparse
    from typing import Any


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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `dagu` parser; with `command`, only that command's sub-parser is complete
    (None: every one, for `dagu --help` and for a word that is no command)."""
    import argparse

    formatter = _formatter_class()
    p = argparse.ArgumentParser(prog="dagu", description="Compile, check and run Dagu v2 workflows.",
                                formatter_class=formatter)
    p.add_argument("--version", action="version", version=f"dagu {__version__}")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks of internal errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, **kwargs: object) -> "argparse.ArgumentParser | _Unbuilt":
        if command is not None and name != command:
            return _Unbuilt()
        return sub.add_parser(name, formatter_class=formatter, **kwargs)

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
    s.add_argument("--send", default=None, help=argparse.SUPPRESS)  # a call step's worker_selector (JSON): to a worker
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

    sa = add("start-all", help="run the scheduler (with its queue dispatcher) and the web server, each "
                               "restarted if it fails, until SIGTERM/SIGINT")
    sa.add_argument("--host", default="127.0.0.1", help="the server's address (default 127.0.0.1)")
    sa.add_argument("--port", type=int, default=8080, help="the server's port (default 8080)")
    sa.add_argument("--dags", default=None, metavar="DIR", help="the DAGs directory (default: $DAGU_HOME/dags)")

    sv = add("server", help="serve the web UI and its JSON API (http://127.0.0.1:8080 by default)")
    sv.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    sv.add_argument("--port", type=int, default=8080, help="the port (default 8080; 0 picks a free one)")
    sv.add_argument("--dags", default=None, metavar="DIR", help="the DAGs directory (default: $DAGU_HOME/dags)")

    us = add("user", help="manage the web UI's users: dagu user add NAME --role R | list | remove NAME")
    us.add_argument("action", choices=("add", "list", "remove"))
    us.add_argument("name", nargs="?", metavar="NAME")
    us.add_argument("--role", choices=("admin", "operator", "viewer"), default=None,
                    help="add: what the user may do (viewer reads; operator also runs, stops, retries, "
                         "approves; admin also edits DAGs and manages users)")
    us.add_argument("--replace", action="store_true", help="add: set a new password and role for an existing user")
    tk = add("token", help="manage API tokens: dagu token create NAME --role R | list | revoke NAME")
    tk.add_argument("action", choices=("create", "list", "revoke"))
    tk.add_argument("name", nargs="?", metavar="NAME")
    tk.add_argument("--role", choices=("admin", "operator", "viewer"), default=None)

    wk = add("worker", help="take runs from the broker for the DAGs whose worker_selector these labels match")
    wk.add_argument("--labels", default="", metavar="K=V,...", help="this worker's labels, e.g. gpu=true,region=eu "
                                                                    "(at most 6)")
    wk.add_argument("--broker", default=None, metavar="URL", help="e.g. redis://127.0.0.1:6379/0 "
                                                                  "(default: $DAGU_BROKER)")
    wk.add_argument("--max-active-runs", type=_positive_int, default=1, metavar="N",
                    help="runs supervised at a time (default 1)")
    wk.add_argument("--id", default=None, metavar="NAME", help="this worker's id (default: HOST-PID)")

    wo = add("workers", help="list the workers of this data dir: labels, running runs, heartbeat, health")
    wo.add_argument("--format", choices=("text", "json"), default="text")

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


def _terminal_columns() -> int:
    """What shutil.get_terminal_size() answers: $COLUMNS, else the terminal's width, else 80."""
    import os
    import sys

    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


def _formatter_class() -> "type[argparse.HelpFormatter]":
    """argparse's help formatter, told the width.  Left to itself it imports shutil (with bz2 and
    lzma, 3 ms) on every add_argument, for the width that only --help and errors print."""
    import argparse

    columns = _terminal_columns() - 2  # argparse's own margin

    class WidthKnown(argparse.HelpFormatter):
        def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                     width: int | None = None) -> None:
            super().__init__(prog, indent_increment, max_help_position, columns if width is None else width)
    return WidthKnown


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
