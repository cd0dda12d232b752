"""A run's state as data, and how journal events change it.

The journal (one JSON object per line, see spec/state-format.md) is the record
of what happened; a status snapshot is only the journal folded up to some
sequence number.  Keeping the fold in one pure function (`apply`) means the
supervisor, `dagu status` after a crash, and the web UI all agree on what a
journal means.
"""

from __future__ import annotations

from dataclasses import field

from dagu.spec.records import dataclass

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any

# Run statuses.  Values match upstream Dagu v2's DAG_RUN_STATUS spelling.
QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
ABORTED = "aborted"
PARTIAL = "partially_succeeded"
WAITING = "waiting"  # a step waits for approval; no supervisor runs until someone decides
MISSED = "missed"  # a scheduled tick that was not run (the scheduler was down): no step ran
RUN_FINAL = frozenset({SUCCEEDED, FAILED, ABORTED, PARTIAL, MISSED})

# Step statuses: the run statuses plus these two.
NOT_STARTED = "not_started"
SKIPPED = "skipped"
STEP_DONE = frozenset({SUCCEEDED, FAILED, ABORTED, PARTIAL, SKIPPED})


@dataclass
class Attempt:
    """One execution of a step: a retry or a repetition is a new attempt."""

    number: int
    started_at: float
    pid: int | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    signal: str | None = None
    error: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    usage: dict[str, Any] | None = None
    children: list[list[str]] | None = None  # [dag, run_id] of sub-DAG runs this attempt started


@dataclass
class StepState:
    id: str
    name: str
    status: str = NOT_STARTED
    attempts: list[Attempt] = field(default_factory=list)
    output: str | None = None  # the captured value of `output:`
    output_name: str | None = None
    outputs: dict[str, Any] | None = None  # a sub-DAG's outputs (call steps)
    reason: str | None = None  # why it was skipped / failed, for people
    handler: str | None = None  # "init", "success", ... for handler steps
    tolerated: bool = False  # failed, but continue_on let the run go on
    approval: dict[str, Any] | None = None  # {"decision", "by", "at", "inputs", "reason"} once decided

    @property
    def last(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None


@dataclass
class RunStatus:
    dag: str
    run_id: str
    status: str = RUNNING
    started_at: float | None = None
    finished_at: float | None = None
    params: list[str] = field(default_factory=list)
    pid: int | None = None
    host: str | None = None
    parent: str | None = None  # "dag/run_id" of the run that called this one
    error: str | None = None
    interrupted: bool = False  # the supervisor died before it could finish the run
    steps: dict[str, StepState] = field(default_factory=dict)
    handlers: dict[str, StepState] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)  # output name -> value, for callers
    # the latest approval push-back: {"iteration", "step", "by", "at", "inputs", "rewind_to",
    # "reset": [step ids run again], "history": [{"iteration", "by", "at", "inputs"}, ...]}
    pushback: dict[str, Any] | None = None
    # retries of the whole run after its distributed worker was lost, oldest first:
    # {"attempt", "at", "due_at", "reason", "started_at" (once it started), "refused" (why it did not)}
    retries: list[dict[str, Any]] = field(default_factory=list)
    seq: int = 0  # the last journal sequence number folded in

    def to_dict(self) -> dict[str, Any]:
        # By hand rather than dataclasses.asdict, which deep-copies every value: the snapshot
        # of a 1,000-step run is written while it runs and must stay cheap.
        def step(state: StepState) -> dict[str, Any]:
            return {**state.__dict__, "attempts": [dict(a.__dict__) for a in state.attempts]}

        out = dict(self.__dict__)
        out["steps"] = {k: step(v) for k, v in self.steps.items()}
        out["handlers"] = {k: step(v) for k, v in self.handlers.items()}
        out["params"] = list(self.params)
        out["outputs"] = dict(self.outputs)
        out["retries"] = [dict(r) for r in self.retries]
        return out

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "RunStatus":
        def step(d: dict[str, Any]) -> StepState:
            attempts = [Attempt(**a) for a in d.get("attempts", [])]
            return StepState(**{**d, "attempts": attempts})

        steps = {k: step(v) for k, v in data.get("steps", {}).items()}
        handlers = {k: step(v) for k, v in data.get("handlers", {}).items()}
        return RunStatus(**{**data, "steps": steps, "handlers": handlers})


def _step(status: RunStatus, event: dict[str, Any]) -> StepState:
    sid = event["step"]
    handler = event.get("handler")
    table = status.handlers if handler else status.steps
    state = table.get(sid)
    if state is None:
        state = table[sid] = StepState(id=sid, name=event.get("name", sid), handler=handler)
    return state


def apply(status: RunStatus, event: dict[str, Any]) -> None:
    """Fold one journal event into `status` (in place)."""
    kind = event["ev"]
    status.seq = event.get("seq", status.seq)
    if kind == "run_started":
        status.status = RUNNING
        status.started_at = status.started_at or event["at"]
        status.finished_at = None
        status.error = None
        status.interrupted = False
        status.pid = event.get("pid")
        status.host = event.get("host")
        status.params = event.get("params", status.params)
        status.parent = event.get("parent", status.parent)
        for sid, name in event.get("steps", []):
            status.steps.setdefault(sid, StepState(id=sid, name=name))
        if retry_pending(status):
            status.retries[-1]["started_at"] = event["at"]
    elif kind == "queued":
        status.status = QUEUED
        status.params = list(event.get("params", []))
    elif kind == "step_reset":  # a retry puts a step back in line
        state = _step(status, event)
        state.status = NOT_STARTED
        state.reason = None
        state.output = None
        state.outputs = None
    elif kind == "step_started":
        state = _step(status, event)
        state.status = RUNNING
        state.reason = None
        state.attempts.append(Attempt(
            number=event["attempt"], started_at=event["at"], pid=event.get("pid"),
            stdout=event.get("stdout"), stderr=event.get("stderr")))
    elif kind == "step_finished":
        state = _step(status, event)
        state.status = event["status"]
        state.reason = event.get("reason")
        if "output" in event:
            state.output = event["output"]
            state.output_name = event.get("output_name")
        if "outputs" in event:
            state.outputs = event["outputs"]
        state.tolerated = bool(event.get("tolerated", False))
        attempt = state.last
        if attempt is not None and attempt.finished_at is None and event.get("attempt") == attempt.number:
            attempt.finished_at = event["at"]
            attempt.exit_code = event.get("exit_code")
            attempt.signal = event.get("signal")
            attempt.error = event.get("error")
            attempt.usage = event.get("usage")
            attempt.children = event.get("children")
    elif kind == "step_skipped":
        state = _step(status, event)
        state.status = SKIPPED
        state.reason = event.get("reason")
        state.tolerated = bool(event.get("tolerated", False))  # a router's unchosen target
    elif kind in ("approved", "rejected"):
        state = _step(status, event)
        state.approval = {"decision": kind, "by": event.get("by"), "at": event["at"],
                          "inputs": event.get("inputs", {}), "reason": event.get("reason")}
        if kind == "approved":
            state.status = SUCCEEDED
            state.reason = f"approved by {event.get('by')}"
        else:
            state.status = FAILED
            state.reason = f"rejected by {event.get('by')}" + (f": {event['reason']}" if event.get("reason") else "")
    elif kind == "pushed_back":  # the approver sent the run back: the rewound steps run again
        history = list((status.pushback or {}).get("history", []))
        entry = {"iteration": event["iteration"], "by": event.get("by"), "at": event["at"],
                 "inputs": event.get("inputs", {})}
        status.pushback = {**entry, "step": event["step"], "rewind_to": event["rewind_to"],
                           "reset": list(event["reset"]), "history": [*history, entry]}
        for sid in event["reset"]:
            state = status.steps.setdefault(sid, StepState(id=sid, name=sid))
            state.status = NOT_STARTED
            state.approval = None
            state.output = None
            state.outputs = None
            state.reason = f"pushed back by {event.get('by')} (iteration {event['iteration']})"
    elif kind == "output":
        status.outputs[event["name"]] = event["value"]
    elif kind == "run_finished":
        status.status = event["status"]
        status.finished_at = event["at"]
        status.error = event.get("error")
    elif kind == "interrupted":  # written by whoever finds a dead supervisor's run
        mark_interrupted(status, event["at"], event.get("reason"))
    elif kind == "retry_scheduled":  # a lost worker's run goes to another worker (distributed/retries.py)
        status.retries.append({"attempt": event["attempt"], "at": event["at"], "due_at": event.get("due_at"),
                               "reason": event.get("reason")})
    elif kind == "retry_refused":  # that retry's supervisor did not take the run
        if retry_pending(status):
            status.retries[-1]["refused"] = event.get("reason") or "refused"


def retry_pending(status: RunStatus) -> bool:
    """A retry of the run is scheduled and has neither started nor been refused: the run's end is
    not its final word yet (a waiting `dagu start`, the queue dispatcher keep waiting)."""
    last = status.retries[-1] if status.retries else None
    return last is not None and "started_at" not in last and "refused" not in last


def mark_interrupted(status: RunStatus, at: float, reason: str | None) -> None:
    """The supervisor died: its run failed, and the steps it was running say so."""
    status.status = FAILED
    status.interrupted = True
    status.finished_at = status.finished_at or at
    status.error = reason or "the supervisor stopped before the run finished (killed, crashed or the host rebooted)"
    for state in (*status.steps.values(), *status.handlers.values()):
        if state.status == RUNNING:
            state.status = FAILED
            state.reason = "interrupted: the supervisor died while this step was running"
            if state.last is not None and state.last.finished_at is None:
                state.last.error = "interrupted"
