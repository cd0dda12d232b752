"""One attempt of a step while it runs: what was started for it, when it must end, what it used.

The graph's `Node` says where a step stands; an `Attempt` holds the I/O side of
its current run (a process job or an in-process call), and `ended_fields` turns
how it ended into the fields of its `step_finished` event (spec/state-format.md).
"""

from __future__ import annotations

import os
import time
from dataclasses import field

from dagu.spec.records import dataclass
from dagu.engine.inprocess import Ticket
from dagu.executors.base import Job, StepResult
from dagu.process import limits as limits_mod
from dagu.process.accounting import Usage
from dagu.process.spawn import signal_name
from dagu.spec.plan import Dag, Step

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any


@dataclass(eq=False)
class Attempt:
    stdout: str
    stderr: str
    job: Job | None = None  # a process executor's job
    ticket: Ticket | None = None  # an in-process executor's call
    pids: set[int] = field(default_factory=set)
    deadline: float | None = None  # the step's timeout_sec
    give_up_at: float | None = None  # an in-process call cancelled this long ago is abandoned
    killed_by: str | None = None  # "timeout", "stop", "dag-timeout", "memory", "cpu"
    started_mono: float = field(default_factory=time.monotonic)
    user: float = 0.0
    sys: float = 0.0
    peak: int = 0
    read: int = 0
    write: int = 0
    samples: int = 0
    cgroup_oom: bool = False
    limits: limits_mod.Limits | None = None
    memory_mechanism: str | None = None
    spawn_error: str | None = None
    leftovers: int = 0  # processes that outlived their leader and were killed

    def add_usage(self, usage: Usage) -> None:
        self.user += usage.user_sec
        self.sys += usage.sys_sec
        self.peak = max(self.peak, usage.peak_rss_bytes)
        self.read += usage.read_bytes
        self.write += usage.write_bytes
        self.samples += usage.samples

    def usage(self) -> dict[str, Any]:
        out: dict[str, Any] = {"wall_sec": round(time.monotonic() - self.started_mono, 6),
                               "user_sec": round(self.user, 6), "sys_sec": round(self.sys, 6),
                               "peak_rss_bytes": self.peak, "read_bytes": self.read, "write_bytes": self.write,
                               "samples": self.samples}
        if self.limits is not None and self.limits.memory_bytes:
            out["memory_limit_by"] = self.memory_mechanism
        return out


def ended_error(att: Attempt, step: Step, dag: Dag, result: StepResult) -> str | None:
    """Why the attempt failed, in the user's terms, or None."""
    code = result.exit_code
    in_process = att.ticket is not None
    why = None
    if att.killed_by == "timeout":
        how = "it was cancelled" if in_process else "its process group was killed"
        why = f"timed out after {step.timeout_sec:g} s (timeout_sec); {how}"
    elif att.killed_by == "stop":
        why = "stopped: the run was aborted"
    elif att.killed_by == "dag-timeout":
        why = f"killed: the DAG ran over its timeout_sec of {dag.timeout_sec:g} s"
    if why is not None:
        abandoned = in_process and att.ticket is not None and att.ticket.abandoned
        return f"{why}; {result.error}" if abandoned and result.error else why
    error = result.error or att.spawn_error
    if in_process:
        return error
    why = limits_mod.describe_failure(att.limits or limits_mod.Limits(), code, att.cgroup_oom,
                                      att.killed_by == "memory",
                                      mechanism="sampler" if att.killed_by == "memory" else att.memory_mechanism,
                                      over_cpu=att.killed_by == "cpu")
    if why:
        return why
    sig = signal_name(code)
    return error or (f"killed by {sig}" if sig else None)


def capture_output(path: str, limit: int) -> tuple[str | None, str | None]:
    """The step's stdout as its `output:` value, or why it cannot be (too big, unreadable)."""
    try:
        size = os.path.getsize(path)
        if size > limit:
            return None, (f"output is {size} bytes, over max_output_size ({limit} bytes); raise "
                          "max_output_size or write large data to a file and pass its path")
        with open(path, "rb") as fh:
            return fh.read().decode("utf-8", "replace").strip(), None  # spec 012: trimmed at both ends
    except OSError as exc:
        return None, f"cannot read the step's output: {exc.strerror}"


def leftover_note(count: int) -> str:
    """What the step's record says when processes outlived its leader (KillMode=control-group)."""
    many = "processes were" if count != 1 else "process was"
    return f"{count} leftover {many} still running when the step ended and killed (SIGTERM, then SIGKILL)"


def ended_fields(att: Attempt, step: Step, dag: Dag, result: StepResult) \
        -> tuple[int, str | None, str | None, dict[str, Any]]:
    """(exit code, error, output value, fields of the step_finished event) of an ended attempt.
    A step with `output:` and no value from its executor gets its stdout, within max_output_size."""
    code = result.exit_code
    error = ended_error(att, step, dag, result)
    if att.killed_by == "cpu" and code == 0:
        code = 1  # the tree went over its CPU limit, even if the leader exited 0 in the end
    output_value = result.output
    if code == 0 and step.output and output_value is None:
        output_value, too_big = capture_output(att.stdout, step.max_output_size or dag.max_output_size)
        if too_big:
            error, code = too_big, 1
    fields: dict[str, Any] = {"exit_code": code, "signal": signal_name(code), "usage": att.usage()}
    if att.leftovers:
        fields["note"] = leftover_note(att.leftovers)
        if error:
            error = f"{error}; {fields['note']}"
    if error:
        fields["error"] = error
    if result.outputs is not None:
        fields["outputs"] = result.outputs
    if result.children:
        fields["children"] = result.children
    if step.output and output_value is not None and code == 0:
        fields["output"] = output_value
        fields["output_name"] = step.output
    return code, error, output_value, fields
