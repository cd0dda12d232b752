"""The run commands of `dagu`: parse -> service -> print.

Kept apart from cli.py so the compile path stays small.  Every command calls
the service (service/) and prints what it returns (cli_format.py); nothing here
finds runs, builds documents or starts processes.  Modules are imported inside
the commands so `dagu --version` and `dagu compile` never load them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from dagu.settings import dagu_home

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any

EXIT_OK, EXIT_FAILED = 0, 1


class CommandFailed(Exception):
    """The command could not do its job (refused run, unknown run, damaged files); exit 1."""


def _print_outcome(outcome: Any, quiet: bool) -> int:
    for problem in outcome.problems:
        sys.stderr.write(f"dagu: warning: {problem}\n")
    if not quiet:
        from dagu.cli_format import run_summary

        sys.stderr.write(run_summary(outcome.status))
        sys.stderr.write("".join(f"{note}\n" for note in outcome.notes))
    return outcome.exit_code


def _loaded(file: str, show_warnings: bool = True) -> Any:
    """The plan of FILE, or None after printing why it does not compile."""
    from dagu.service.dags import load_for_run

    loaded = load_for_run(file, dagu_home())
    if loaded.plan is None:
        sys.stderr.write(loaded.diagnostics or "")
    elif loaded.diagnostics and show_warnings:
        sys.stderr.write(loaded.diagnostics)
    return loaded if loaded.plan is not None else None


def _dag(file: str) -> str:
    from dagu.service.dags import resolve_dag_name

    return resolve_dag_name(file, dagu_home())


def start_cmd(args: argparse.Namespace) -> int:
    from dagu.service import runs

    loaded = _loaded(args.file, show_warnings=args.parent is None)
    if loaded is None:
        return EXIT_FAILED
    words = runs.split_params(args.params, args.rest)
    if args.send is not None:
        return _send_call(args, loaded, words)
    if args.parent is None and args.missed is None and args.dag is None and "DAGU_BROKER" in os.environ:
        from dagu.service import workers

        if workers.routes_remotely(os.environ, loaded.plan):
            return _start_remote(args, loaded, words)
    outcome = runs.start(dagu_home(), os.environ, loaded.plan, words, args.run_id, dag=args.dag, parent=args.parent,
                         plan_text=loaded.plan_text, missed=args.missed)
    return _print_outcome(outcome, args.quiet or args.parent is not None)


def _start_remote(args: argparse.Namespace, loaded: Any, words: list[str]) -> int:
    """`dagu start` of a DAG with a worker_selector and a broker: send it, wait for its end."""
    from dagu.service import control, workers

    sent = workers.start_remote(dagu_home(), os.environ, loaded.plan, words, args.run_id, plan_text=loaded.plan_text)
    if not args.quiet:
        sys.stderr.write(f"dagu: run {sent.run_id} of {sent.dag!r} sent to queue {sent.queue}; waiting for a worker\n")
    status = workers.wait_remote(dagu_home(), sent)
    if not args.quiet:
        from dagu.cli_format import run_summary

        worker = workers.worker_of(dagu_home(), sent.dag, sent.run_id)
        sys.stderr.write(run_summary(status) + (f"dagu: ran on worker {worker}\n" if worker else ""))
    return control.exit_code(status)


def _send_call(args: argparse.Namespace, loaded: Any, words: list[str]) -> int:
    """A call step's sub-run with a worker_selector (`dagu start --send SELECTOR`, run by the
    calling supervisor as the step's process): send it, wait for its end, exit as `start -q`
    would.  A stop of the step (SIGTERM) stops the remote run too."""
    import signal

    from dagu.service import control, workers

    try:
        selector = json.loads(args.send)
    except ValueError:
        raise CommandFailed(f"--send {args.send!r} is not a JSON selector") from None
    sent = workers.start_remote(dagu_home(), os.environ, loaded.plan, words, args.run_id, plan_text=loaded.plan_text,
                                dag=args.dag, parent=args.parent, selector=selector)
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopping.append(signum))
    status = workers.wait_remote(dagu_home(), sent, stop=lambda: bool(stopping))
    if status is None:  # stopped while it waited or ran
        workers.stop_sent(dagu_home(), os.environ, sent)
        return 143
    return control.exit_code(status)


def workers_cmd(args: argparse.Namespace) -> int:
    """`dagu workers`: each worker's id, labels, running runs, last heartbeat and health."""
    from dagu.cli_format import workers_text
    from dagu.service.workers import list_workers

    rows = list_workers(dagu_home())
    if args.format == "json":
        sys.stdout.write(json.dumps([w.to_dict() for w in rows], indent=2, ensure_ascii=False) + "\n")
        return EXIT_OK
    if not rows:
        sys.stderr.write("dagu workers: no worker has served this data dir (start one: dagu worker --broker URL)\n")
    sys.stdout.write(workers_text(rows))
    return EXIT_OK


def worker_cmd(args: argparse.Namespace) -> int:
    """`dagu worker`: serve until SIGTERM."""
    from dagu.service.workers import serve_worker

    return serve_worker(dagu_home(), os.environ, args.broker, args.labels, args.max_active_runs, args.id)


def retry_cmd(args: argparse.Namespace) -> int:
    from dagu.service import runs

    outcome = runs.retry(dagu_home(), os.environ, _dag(args.file), args.run_id, step=args.step)
    return _print_outcome(outcome, args.quiet)


def _launcher() -> Any:
    from dagu.service.launching import run_launcher

    return run_launcher(dagu_home(), os.environ)


def stop_cmd(args: argparse.Namespace) -> int:
    from dagu.service import control

    name = _dag(args.file)
    if args.run_id is not None:
        stopped = [control.stop_run(dagu_home(), _launcher(), name, args.run_id)]
    else:
        stopped = control.stop_dag(dagu_home(), _launcher(), name)
    if not stopped:
        sys.stderr.write(f"dagu stop: no active run of {name!r}\n")
    for s in stopped:
        sys.stderr.write(f"dagu stop: stopped run {s.run_id} of {name!r}\n" if s.ended else
                         f"dagu stop: asked run {s.run_id} of {name!r} to stop; it had not ended when we stopped waiting\n")
    return EXIT_OK


def restart_cmd(args: argparse.Namespace) -> int:
    from dagu.service import runs

    loaded = _loaded(args.file)
    if loaded is None:
        return EXIT_FAILED
    outcome = runs.restart(dagu_home(), os.environ, _launcher(), loaded.plan, args.run_id)
    return _print_outcome(outcome, args.quiet)


def scheduler_status_cmd(args: argparse.Namespace) -> int:
    """`dagu status --scheduler`: exit 0 when a scheduler is alive and looping, else 1."""
    from dagu.schedule.status import render_text
    from dagu.service.reading import scheduler_report

    report = scheduler_report(dagu_home())
    if args.format == "json":
        sys.stdout.write(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render_text(report))
    return EXIT_OK if report.healthy else EXIT_FAILED


def status_cmd(args: argparse.Namespace) -> int:
    from dagu.service import reading

    name = _dag(args.file)
    warning = reading.compile_warning(dagu_home(), args.file, name)
    if warning:
        sys.stderr.write(f"dagu status: warning: {warning}\n")
    report = reading.status(dagu_home(), name, args.run_id)
    if args.format == "json":
        sys.stdout.write(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n")
        return EXIT_OK
    from dagu.cli_format import status_text

    for problem in report.view.problems:
        sys.stderr.write(f"dagu status: warning: {problem}\n")
    sys.stdout.write(status_text(report))
    return EXIT_OK


def history_cmd(args: argparse.Namespace) -> int:
    from dagu.cli_format import history_text
    from dagu.service import reading

    name = _dag(args.file)
    rows = reading.history(dagu_home(), name, args.limit)
    if args.format == "json":
        sys.stdout.write(json.dumps([r.to_dict() for r in rows], indent=2, ensure_ascii=False) + "\n")
        return EXIT_OK
    for row in rows:
        for problem in getattr(getattr(row, "view", None), "problems", []):
            sys.stderr.write(f"dagu history: warning: {problem}\n")
    text = history_text(rows)
    if not text:
        sys.stderr.write(f"dagu history: no runs of {name!r}\n")
    sys.stdout.write(text)
    return EXIT_OK


def logs_cmd(args: argparse.Namespace) -> int:
    from dagu.service import reading

    name = _dag(args.file)
    view = reading.run_view(dagu_home(), name, args.run_id)
    stream = reading.STDERR if args.stderr else reading.STDOUT
    headers = args.step is None
    printed: dict[str, int] = {}

    def emit(current: Any) -> None:
        for log in reading.log_files(current, args.step, stream):
            if not os.path.exists(log.path):
                continue
            chunk = reading.read_chunk(log.path, printed.get(log.path, 0))
            if not chunk.data and log.path in printed:
                continue
            if headers and log.path not in printed:
                sys.stdout.write(f"==> {log.label}: {log.path} <==\n")
            printed[log.path] = chunk.next_offset
            sys.stdout.write(chunk.data.decode("utf-8", "replace"))
            sys.stdout.flush()

    emit(view)
    if args.follow:
        while True:
            current = reading.run_view(dagu_home(), name, view.status.run_id)
            emit(current)
            if not current.live:
                break
            time.sleep(0.2)
    return EXIT_OK


def cleanup_cmd(args: argparse.Namespace) -> int:
    """Apply retention now: a DAG's age/count limits (FILE) and/or the data dir's size cap (--max-size)."""
    from dagu.cli_format import fmt_time
    from dagu.process.limits import format_size
    from dagu.service.housekeeping import LOG_FILE, cleanup

    name = _dag(args.file) if args.file else None
    report = cleanup(dagu_home(), name, args.retention_days, args.retention_runs, args.max_size, args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    for r in report.removed:
        via = f", with {r.parent}" if r.parent else ""
        sys.stdout.write(f"{verb} {r.dag}/{r.run_id} ({r.reason}: {r.status}, finished {fmt_time(r.finished_at)}, "
                         f"{format_size(r.bytes)}{via})\n")
    top = [r for r in report.removed if r.parent is None]
    scope = f" of {name!r}" if name is not None and args.max_size is None else ""
    sys.stderr.write(f"dagu cleanup: {verb} {len(top)} run(s){scope}, {format_size(report.bytes)}"
                     + (f"; finished {report.tombstones} interrupted deletion(s)" if report.tombstones else "")
                     + ("" if args.dry_run or not top else f"; see {os.path.join(dagu_home(), LOG_FILE)}")
                     + "\n")
    return EXIT_OK


def exec_cmd(args: argparse.Namespace) -> int:
    from dagu.service import runs

    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    plan = runs.exec_plan(argv, args.name, args.working_dir or os.getcwd())
    return _print_outcome(runs.start(dagu_home(), os.environ, plan, [], args.run_id), args.quiet)


def enqueue_cmd(args: argparse.Namespace) -> int:
    from dagu.service import runs

    loaded = _loaded(args.file)
    if loaded is None:
        return EXIT_FAILED
    item = runs.enqueue(dagu_home(), loaded.plan, runs.split_params(args.params, args.rest), args.run_id)
    sys.stdout.write(f"{item.run_id}\n")
    sys.stderr.write(f"dagu enqueue: run {item.run_id} of {item.dag!r} is queued in {item.queue!r}\n")
    return EXIT_OK


def dequeue_cmd(args: argparse.Namespace) -> int:
    from dagu.service import runs

    name = _dag(args.file)
    runs.dequeue(dagu_home(), name, args.run_id)
    sys.stderr.write(f"dagu dequeue: removed run {args.run_id} of {name!r} from its queue\n")
    return EXIT_OK


def queue_cmd(args: argparse.Namespace) -> int:
    from dagu.cli_format import fmt_time
    from dagu.service import runs, scheduling

    if args.action == "list":
        for item in runs.queue_items(dagu_home()):
            sys.stdout.write(f"{item.queue}\t{item.dag}\t{item.run_id}\t{fmt_time(item.enqueued_at)}\n")
        return EXIT_OK
    started = scheduling.run_queues(dagu_home(), os.environ, once=args.once, poll_sec=args.poll)
    sys.stderr.write(f"dagu queue: started {started} run(s)\n")
    return EXIT_OK


def _target(text: str) -> tuple[str, str]:
    dag, _, run_id = text.partition("/")
    if not run_id:
        raise CommandFailed("give DAG/RUN_ID")
    return dag, run_id


def start_queued_cmd(args: argparse.Namespace) -> int:
    from dagu.service import runs

    dag, run_id = _target(args.target)
    return _print_outcome(runs.start_queued(dagu_home(), os.environ, dag, run_id), args.quiet)


def resume_cmd(args: argparse.Namespace) -> int:
    """The supervisor of a run continued after an approval decision (hidden; the launcher runs it)."""
    from dagu.service import control

    dag, run_id = _target(args.target)
    return _print_outcome(control.resume(dagu_home(), os.environ, dag, run_id), args.quiet)


def decide_cmd(args: argparse.Namespace, decision: str) -> int:
    """approve / reject / push-back: record the decision; the run continues in its own process.
    With --wait, wait for that process and report the run as `dagu start` does."""
    import getpass

    from dagu.service import control, reading

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
    done = control.decide(dagu_home(), _launcher(), args.run_id, args.step, decision, inputs,
                          getattr(args, "reason", None), by, dag=args.dag)
    if not args.wait:
        if not args.quiet:
            sys.stderr.write(f"dagu {decision.replace('_', '-')}: recorded for step {done.step!r} of run "
                             f"{done.run_id}; the run continues in its own process "
                             f"(dagu status {done.dag} --run-id {done.run_id})\n")
        return EXIT_OK
    control.wait_for_process(done.process)
    status = reading.run_view(dagu_home(), done.dag, done.run_id).status
    if not args.quiet:
        from dagu.cli_format import run_summary

        sys.stderr.write(run_summary(status))
    return control.exit_code(status)
