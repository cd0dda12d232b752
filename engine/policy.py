"""What one attempt's end means for its step, as a pure function (ninja's Builder decisions).

After an attempt the step is repeated (repeat_policy), retried after an
interval (retry_policy), tolerated (continue_on), held for approval, or it
succeeds, fails or is aborted because the run is stopping.  The two questions
that need I/O, whether a repeat condition holds and whether a stdout line
matches continue_on.output, are asked through callables, only when the
decision depends on them; everything else is plain data in, a `Decision` out.
And once no step can start: the run's final status, and which handlers run after it.
"""

from __future__ import annotations

from collections.abc import Callable

from dagu.spec.records import dataclass
from dagu.engine.graph import Node
from dagu.store.state import ABORTED, FAILED, PARTIAL, RUNNING, SUCCEEDED, WAITING

REPEAT, RETRY, SUCCEED, WAIT, CONTINUE, ABORT, FAIL = "repeat", "retry", "succeed", "wait", "continue", "abort", "fail"
# The handler_on entries that run, in order, after a run ends with each status.
HANDLERS_AFTER = {SUCCEEDED: ("success", "exit"), PARTIAL: ("success", "exit"), FAILED: ("failure", "exit"),
                  ABORTED: ("abort", "exit"), WAITING: ("wait",)}


@dataclass(frozen=True)
class AttemptEnd:
    """How an attempt ended: exit code, an error beyond the code, and why it was killed if it was."""

    code: int
    error: str | None = None
    killed_by: str | None = None  # "timeout", "stop", "dag-timeout", "memory"
    stopping: bool = False  # the run is stopping (a signal, the DAG's timeout)


@dataclass(frozen=True)
class Decision:
    action: str
    status: str  # what the step is now (RUNNING for an attempt that another follows)
    reason: str | None = None
    delay: float = 0.0  # before the next attempt (repeat, retry)
    tolerated: bool = False


def backoff_delay(interval: float, backoff: float, cap: float | None, n: int) -> float:
    """The wait before the n-th repetition or retry: interval * backoff^(n-1), at most cap."""
    delay = interval * (backoff ** (n - 1)) if backoff and backoff > 1 else interval
    if cap is not None:
        delay = min(delay, cap)
    return max(0.0, delay)


def should_repeat(node: Node, end: AttemptEnd, condition_holds: Callable[[], bool | None]) -> bool:
    """`condition_holds` is asked only when the policy has a condition; None means it could not be
    evaluated, and then the step is not repeated."""
    policy = node.step.repeat_policy
    if policy is None or end.killed_by is not None:
        return False
    if policy.limit is not None and node.repeats + 1 >= policy.limit:
        return False
    if policy.exit_codes:
        listed = end.code in policy.exit_codes
        return listed if policy.mode == "while" else not listed
    if end.code != 0:
        return False
    if policy.condition is None:
        return policy.mode == "while"
    met = condition_holds()
    if met is None:
        return False
    return met if policy.mode == "while" else not met


def should_retry(node: Node, end: AttemptEnd) -> bool:
    policy = node.step.retry_policy
    if policy is None or end.killed_by is not None or node.tries >= policy.limit:
        return False
    return not policy.exit_codes or end.code in policy.exit_codes


def should_continue(node: Node, end: AttemptEnd, output_matches: Callable[[], bool]) -> bool:
    rule = node.step.continue_on
    return rule.failure or end.code in rule.exit_codes or (bool(rule.output) and output_matches())


def decide(node: Node, end: AttemptEnd, condition_holds: Callable[[], bool | None] = lambda: None,
           output_matches: Callable[[], bool] = lambda: False) -> Decision:
    """The step's fate after an attempt.  Repetition comes first: a repeating step is not
    finished until its policy says so.  Handlers neither wait for approval nor continue_on."""
    step = node.step
    stopping = end.stopping or end.killed_by in ("stop", "dag-timeout")
    if not stopping and should_repeat(node, end, condition_holds):
        policy = step.repeat_policy
        assert policy is not None
        return Decision(REPEAT, RUNNING,
                        delay=backoff_delay(policy.interval_sec, policy.backoff, policy.max_interval_sec,
                                            node.repeats + 1))
    if end.code == 0 and not end.error:
        approval = step.options.get("approval") if node.handler is None else None
        if isinstance(approval, dict) and not node.approved:
            prompt = approval.get("prompt") or "approve to continue"
            return Decision(WAIT, WAITING, reason=f"waiting for approval: {prompt}")
        return Decision(SUCCEED, SUCCEEDED)
    if not stopping and should_retry(node, end):
        retry = step.retry_policy
        assert retry is not None
        return Decision(RETRY, RUNNING,
                        delay=backoff_delay(retry.interval_sec, retry.backoff, retry.max_interval_sec,
                                            node.tries + 1))
    if stopping:
        return Decision(ABORT, ABORTED, reason=end.error)
    why = end.error or f"exit status {end.code}"
    if node.handler is None and should_continue(node, end, output_matches):
        mark = step.continue_on.mark_success
        return Decision(CONTINUE, SUCCEEDED if mark else FAILED, reason=why + "; the run continues (continue_on)",
                        tolerated=not mark)
    return Decision(FAIL, FAILED, reason=why)


def run_outcome(stop_reason: str | None, timeout_sec: float | None, outcome: tuple[str, list[str]],
                run_id: str) -> tuple[str, str | None]:
    """The run's final status and the error that says why, from why it was stopped (a signal,
    its timeout) if it was, else from its steps' outcome (`StepGraph.outcome`)."""
    if stop_reason == "signal":
        return ABORTED, None
    if stop_reason == "timeout":
        return FAILED, f"the DAG ran over its timeout_sec of {timeout_sec or 0:g} s"
    final, waiting = outcome
    if waiting:
        return final, (f"waiting for approval of step(s) {', '.join(waiting)}: "
                       f"dagu approve {run_id} STEP, or dagu reject {run_id} STEP")
    return final, None
