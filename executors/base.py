"""The one protocol every step type implements, in one of two kinds.

- A *process* executor (command, call; ssh and docker later) says which
  processes to start (`Launch`), is told when each exits, and reports a
  `StepResult`.  The supervisor owns everything around processes: sessions,
  timeouts, signals, accounting, limits and log files.
- An *in-process* executor (router, noop; http, sql, ... later) is a function
  `run(request, io, cancel) -> StepResult` that the supervisor calls on a worker
  thread.  It writes its log lines to `io` as it goes and watches `cancel`: on a
  timeout or a stop the token is set, and a `run` that has not returned within
  the step's grace period is abandoned.

Both receive a `StepRequest` whose values are already rendered, so executors
never evaluate templates and never import the engine: they can be written and
tested against nothing but this module.
"""

from __future__ import annotations

import threading
from dataclasses import field
from collections.abc import Callable, Mapping

from dagu.spec.records import dataclass

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any, Protocol, TextIO
else:
    Protocol = object  # the protocols here are for type checkers: at run time, plain classes


class ExecutorError(Exception):
    """The step cannot be started as written (bad config, a called DAG missing, ...)."""


@dataclass(frozen=True)
class ResolvedRoute:
    """A router branch with its pattern rendered."""

    pattern: str
    targets: tuple[str, ...]
    regex: bool = False
    compare: str | None = None


@dataclass(frozen=True)
class ResolvedCall:
    """A sub-DAG step, resolved: the DAG, one list of param words per run, and how many at once."""

    dag: str
    runs: tuple[tuple[str, ...], ...]
    items: tuple[Any, ...] | None = None  # parallel items (None: a single call)
    max_concurrent: int = 1
    run_key: str = ""  # names the sub-runs: the same key on a retry means the same runs, retried
    # the step's worker_selector, else the called DAG's: {label: value} sends the runs to a worker
    # when a broker is configured (spec/distributed.md); None runs them here
    worker_selector: dict[str, Any] | None = None


@dataclass
class StepRequest:
    """One attempt of a step with every `${...}` already expanded by the engine."""

    step_id: str
    step_name: str
    type: str
    dag_name: str
    run_id: str
    attempt: int
    env: dict[str, str]  # the step's process environment (sandboxed)
    cwd: str
    stdout: str  # log file paths; output never goes through a pipe
    stderr: str
    scratch: str  # a directory for files the executor writes (scripts, ...)
    command: list[str] = field(default_factory=list)  # rendered command lines
    script: str | None = None
    shell: tuple[str, ...] = ()  # the step's shell, else the DAG's
    shell_named_by_step: bool = False  # the step chose its shell itself: no errexit is added (spec 014)
    config: dict[str, Any] = field(default_factory=dict)  # the rendered `with:`/`config:` block
    value: str | None = None  # a router's value
    routes: tuple[ResolvedRoute, ...] = ()
    call: ResolvedCall | None = None
    handler: str | None = None
    timeout_sec: float | None = None
    plan_path: str = ""
    home: str = ""
    self_argv: list[str] = field(default_factory=list)  # how to invoke dagu itself
    parent_env: Mapping[str, str] = field(default_factory=dict)  # the supervisor's own environment
    max_output_size: int = 1048576  # the cap on a value an executor returns as `output` (the DAG's)


@dataclass
class Launch:
    """One process to start: argv, environment, directory, and where its output goes."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    stdout: str  # a file path; output never goes through a pipe
    stderr: str
    stdin_file: str | None = None
    tag: Any = None  # the executor's own bookkeeping (e.g. a parallel item index)
    sandboxed: bool = True  # False for dagu's own child supervisors (they sandbox their steps)
    run: Any = None  # a dagu run (launch.base.RunRequest) that `argv` supervises: the engine may
    # fork itself to supervise it rather than start a new interpreter (engine/subrun.py)


@dataclass
class StepResult:
    exit_code: int
    error: str | None = None  # a failure that is not just an exit status
    output: str | None = None  # overrides the captured stdout as the value of `output:`
    outputs: dict[str, Any] | None = None  # structured outputs (a sub-DAG's, a router's choice)
    children: list[list[str]] | None = None  # [dag, run_id] of the runs this attempt started


JobResult = StepResult  # the name process executors were written against


class Job(Protocol):
    """One attempt of a process executor."""

    def launches(self) -> list[Launch]:
        """Processes to start now (called after start and after every exit)."""

    def exited(self, launch: Launch, returncode: int) -> None:
        """A launch finished with this status (negative: killed by that signal)."""

    def done(self) -> bool: ...

    def result(self) -> StepResult: ...


@dataclass
class StepIO:
    """Where an in-process executor writes its log lines: the step's stdout and stderr files,
    line-buffered, so `dagu logs` shows them while the step still runs."""

    out: TextIO
    err: TextIO


class Cancellation:
    """Set by the engine on a timeout or a stop; an executor polls it, waits on it, or registers
    a callback (e.g. to cancel a query on its server) that runs on the engine's thread."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep until cancelled or `timeout` passes; True when cancelled."""
        return self._event.wait(timeout)

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Run `callback` when cancelled (at once if already cancelled)."""
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return
        callback()

    def set(self) -> None:
        with self._lock:
            if self._event.is_set():
                return
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # a client's cancel hook failing must not stop the engine
                pass


class InProcessExecutor(Protocol):
    def __call__(self, request: StepRequest, io: StepIO, cancel: Cancellation) -> StepResult: ...
