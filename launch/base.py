"""How a run gets its supervisor process: the interface every launcher implements.

A *run request* says which run to supervise (start, resume after an approval,
retry, start a queued run, record missed ticks); a *launcher* gives it a
supervisor process.  The local launcher forks one from the warm zygote or
spawns `dagu` (launch/local.py); a remote launcher (distributed workers) will
sit beside it.  The service layer and the engine's sub-DAG calls both go
through this interface, so where a run executes is decided in one place.

Supervisor processes are always separate processes: a request thread of the web
server, or an approver's terminal, never becomes a supervisor.
"""

from __future__ import annotations

from dataclasses import field
from collections.abc import Sequence

from dagu.spec.records import dataclass

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Protocol
else:
    Protocol = object  # the protocols here are for type checkers: at run time, plain classes

START, RESUME, RETRY, START_QUEUED, MISSED, RESTART = "start", "resume", "retry", "start-queued", "missed", "restart"
OPS = (START, RESUME, RETRY, START_QUEUED, MISSED, RESTART)


@dataclass(frozen=True)
class RunRequest:
    """One run for a supervisor process to take over; everything in it is plain data (JSON-able)."""

    op: str
    dag: str
    run_id: str
    plan_path: str | None = None  # START/MISSED/RESTART: the plan file; the others read the run's own copy
    params: tuple[str, ...] = ()  # START: the words after `--`
    parent: str | None = None  # "dag/run_id" of the calling run (sub-DAG runs)
    missed: str | None = None  # MISSED: why no step runs
    step: str | None = None  # RETRY: only this step (and nothing else) runs again
    env: tuple[tuple[str, str], ...] = field(default=())  # extra variables for the supervisor process


class LaunchedRun(Protocol):
    """A handle on a launched supervisor: `poll()` is None while it runs (the Popen protocol)."""

    def poll(self) -> int | None: ...


class Launcher(Protocol):
    def launch(self, request: RunRequest) -> LaunchedRun:
        """Start a detached supervisor for the request and return at once."""

    def argv(self, request: RunRequest) -> list[str]:
        """The command line that supervises the request in the foreground (a child process of the
        caller: the engine's sub-DAG calls start it themselves to reap and account it)."""

    def stop(self, pid: int) -> bool:
        """Ask the supervisor with this pid to stop its run; False when it is gone."""


def request_argv(self_argv: Sequence[str], request: RunRequest) -> list[str]:
    """The `dagu` command line for a request: the one contract between launchers and the CLI."""
    if request.op == START or request.op == MISSED:
        if request.plan_path is None:
            raise ValueError(f"a {request.op} request needs the plan file")
        argv = [*self_argv, "start", "-q", request.plan_path, "--dag", request.dag, "--run-id", request.run_id]
        if request.parent:
            argv += ["--parent", request.parent]
        if request.missed is not None:
            argv += ["--missed", request.missed]
        return [*argv, "--", *request.params]
    if request.op == START_QUEUED:
        return [*self_argv, "start-queued", "-q", f"{request.dag}/{request.run_id}"]
    if request.op == RETRY:
        argv = [*self_argv, "retry", "-q", request.dag, "--run-id", request.run_id]
        return argv + (["--step", request.step] if request.step else [])
    if request.op == RESTART:  # stop the DAG's active runs, then start it again (cli: `dagu restart`)
        if request.plan_path is None:
            raise ValueError("a restart request needs the plan file")
        return [*self_argv, "restart", "-q", request.plan_path, "--run-id", request.run_id]
    if request.op == RESUME:
        return [*self_argv, "resume", "-q", f"{request.dag}/{request.run_id}"]
    raise ValueError(f"unknown run request {request.op!r} (one of {', '.join(OPS)})")
