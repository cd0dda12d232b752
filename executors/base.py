"""The one small interface every step type implements.

A step attempt is a *job*: it asks the supervisor to start processes
(`Launch`), is told when each exits, and finally reports a `JobResult`.  The
supervisor owns everything around processes (sessions, timeouts, signals,
accounting, limits, logs), so an executor only says what to run and how to
read the result.  Types that need no process (router, noop) are handled by
the supervisor itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

from dagu.engine.evaluate import Scope
from dagu.spec.plan import Dag, Plan, Step


class ExecutorError(Exception):
    """The step cannot be started as written (unsupported type, bad config, ...)."""


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


@dataclass
class JobResult:
    exit_code: int
    error: str | None = None  # a failure that is not just an exit status
    output: str | None = None  # overrides the captured stdout as the value of `output:`
    outputs: dict[str, Any] | None = None  # a sub-DAG's outputs
    children: list[list[str]] | None = None  # [dag, run_id] of the runs this attempt started


@dataclass
class JobContext:
    """What an executor may use to build its launches."""

    plan: Plan
    plan_path: str
    dag: Dag
    step: Step
    scope: Scope  # variables visible to the step
    env: dict[str, str]  # the step's process environment (sandboxed)
    cwd: str
    stdout: str
    stderr: str
    attempt: int
    run_id: str
    home: str
    scratch: str  # a directory for files the job writes (scripts, ...)
    self_argv: list[str] = field(default_factory=list)  # how to invoke dagu itself
    parent_env: Mapping[str, str] = field(default_factory=dict)  # the supervisor's own environment


class Job(Protocol):
    def launches(self) -> list[Launch]:
        """Processes to start now (called after start and after every exit)."""

    def exited(self, launch: Launch, returncode: int) -> None:
        """A launch finished with this status (negative: killed by that signal)."""

    def done(self) -> bool: ...

    def result(self) -> JobResult: ...
