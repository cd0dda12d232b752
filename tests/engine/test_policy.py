"""The after-attempt decision without processes: repeat, retry with backoff, continue_on,
approval, success, failure, abort when stopping."""

from __future__ import annotations

import pytest

from dagu.engine import policy
from dagu.engine.graph import Node
from dagu.engine.policy import AttemptEnd, backoff_delay, decide
from dagu.spec.plan import ContinueOn, Matcher, RepeatPolicy, RetryPolicy, Step
from dagu.store.state import ABORTED, FAILED, PARTIAL, RUNNING, SUCCEEDED, WAITING


def node(**kw) -> Node:
    handler = kw.pop("handler", None)
    return Node(Step(id="s", name="s", **kw), handler=handler)


@pytest.mark.parametrize(("kw", "end", "action", "status"), [
    ({}, AttemptEnd(0), policy.SUCCEED, SUCCEEDED),
    ({}, AttemptEnd(2), policy.FAIL, FAILED),
    ({}, AttemptEnd(0, error="output too big"), policy.FAIL, FAILED),
    ({}, AttemptEnd(-15, killed_by="stop"), policy.ABORT, ABORTED),
    ({}, AttemptEnd(1, stopping=True), policy.ABORT, ABORTED),
    ({"retry_policy": RetryPolicy(limit=2)}, AttemptEnd(1), policy.RETRY, RUNNING),
    ({"retry_policy": RetryPolicy(limit=2, exit_codes=(3,))}, AttemptEnd(1), policy.FAIL, FAILED),
    ({"retry_policy": RetryPolicy(limit=2)}, AttemptEnd(1, killed_by="timeout"), policy.FAIL, FAILED),
    ({"retry_policy": RetryPolicy(limit=2)}, AttemptEnd(1, stopping=True), policy.ABORT, ABORTED),
    ({"continue_on": ContinueOn(failure=True)}, AttemptEnd(1), policy.CONTINUE, FAILED),
    ({"continue_on": ContinueOn(exit_codes=(4,))}, AttemptEnd(4), policy.CONTINUE, FAILED),
    ({"continue_on": ContinueOn(exit_codes=(4,))}, AttemptEnd(5), policy.FAIL, FAILED),
    ({"continue_on": ContinueOn(failure=True, mark_success=True)}, AttemptEnd(1), policy.CONTINUE, SUCCEEDED),
    ({"repeat_policy": RepeatPolicy("while")}, AttemptEnd(0), policy.REPEAT, RUNNING),
    ({"repeat_policy": RepeatPolicy("while", limit=1)}, AttemptEnd(0), policy.SUCCEED, SUCCEEDED),
    ({"repeat_policy": RepeatPolicy("until", exit_codes=(0,))}, AttemptEnd(0), policy.SUCCEED, SUCCEEDED),
    ({"repeat_policy": RepeatPolicy("until", exit_codes=(0,))}, AttemptEnd(1), policy.REPEAT, RUNNING),
    ({"repeat_policy": RepeatPolicy("while")}, AttemptEnd(0, stopping=True), policy.SUCCEED, SUCCEEDED),
    ({"options": {"approval": {"prompt": "ok?"}}}, AttemptEnd(0), policy.WAIT, WAITING),
    ({"options": {"approval": {}}}, AttemptEnd(1), policy.FAIL, FAILED),
])
def test_decide(kw: dict, end: AttemptEnd, action: str, status: str) -> None:
    decision = decide(node(**kw), end)
    assert (decision.action, decision.status) == (action, status)


def test_continue_on_tolerates_unless_marked_success() -> None:
    assert decide(node(continue_on=ContinueOn(failure=True)), AttemptEnd(1)).tolerated
    assert not decide(node(continue_on=ContinueOn(failure=True, mark_success=True)), AttemptEnd(1)).tolerated


def test_the_reason_says_why_and_that_the_run_goes_on() -> None:
    assert decide(node(), AttemptEnd(2)).reason == "exit status 2"
    assert decide(node(continue_on=ContinueOn(failure=True)), AttemptEnd(2)).reason == \
        "exit status 2; the run continues (continue_on)"
    assert decide(node(options={"approval": {"prompt": "Ship?"}}), AttemptEnd(0)).reason == \
        "waiting for approval: Ship?"


def test_an_approved_step_and_a_handler_do_not_wait() -> None:
    gate = node(options={"approval": {}})
    gate.approved = True
    assert decide(gate, AttemptEnd(0)).action == policy.SUCCEED
    assert decide(node(options={"approval": {}}, handler="exit"), AttemptEnd(0)).action == policy.SUCCEED


def test_handlers_never_continue_on() -> None:
    assert decide(node(continue_on=ContinueOn(failure=True), handler="exit"), AttemptEnd(1)).action == policy.FAIL


def test_retries_stop_at_the_limit() -> None:
    n = node(retry_policy=RetryPolicy(limit=2))
    n.tries = 2
    assert decide(n, AttemptEnd(1)).action == policy.FAIL


def test_continue_on_output_is_asked_only_when_needed() -> None:
    asked = []
    rule = ContinueOn(output=(Matcher(["warn"]),))

    def matches() -> bool:
        asked.append(1)
        return True

    assert decide(node(continue_on=rule), AttemptEnd(0), output_matches=matches).action == policy.SUCCEED
    assert asked == []
    assert decide(node(continue_on=rule), AttemptEnd(1), output_matches=matches).action == policy.CONTINUE
    assert asked == [1]


@pytest.mark.parametrize(("mode", "holds", "action"), [
    ("while", True, policy.REPEAT), ("while", False, policy.SUCCEED),
    ("until", True, policy.SUCCEED), ("until", False, policy.REPEAT),
    ("while", None, policy.SUCCEED),  # a condition that cannot be evaluated ends the repetition
])
def test_repeat_conditions(mode: str, holds, action: str) -> None:
    from dagu.spec.plan import Condition

    n = node(repeat_policy=RepeatPolicy(mode, condition=Condition(["x"])))
    assert decide(n, AttemptEnd(0), condition_holds=lambda: holds).action == action


@pytest.mark.parametrize(("interval", "backoff", "cap", "n", "delay"), [
    (2, 0, None, 3, 2), (2, 2, None, 1, 2), (2, 2, None, 3, 8), (2, 2, 5, 3, 5), (1, 1, None, 4, 1),
])
def test_backoff_delay(interval: float, backoff: float, cap, n: int, delay: float) -> None:
    assert backoff_delay(interval, backoff, cap, n) == delay


def test_a_retry_waits_its_backed_off_interval() -> None:
    n = node(retry_policy=RetryPolicy(limit=5, interval_sec=1, backoff=2))
    n.tries = 2
    assert decide(n, AttemptEnd(1)).delay == 4


def test_the_run_outcome_is_the_stop_reason_first_then_the_steps() -> None:
    succeeded = (SUCCEEDED, [])
    assert policy.run_outcome("signal", None, (FAILED, []), "r1") == (ABORTED, None)
    assert policy.run_outcome("timeout", 2.5, succeeded, "r1") == (FAILED, "the DAG ran over its timeout_sec of 2.5 s")
    assert policy.run_outcome(None, None, succeeded, "r1") == (SUCCEEDED, None)
    status, error = policy.run_outcome(None, None, (WAITING, ["gate", "ship"]), "r7")
    assert status == WAITING and "gate, ship" in error and "dagu approve r7 STEP" in error


def test_handlers_after_each_final_status() -> None:
    assert policy.HANDLERS_AFTER[SUCCEEDED] == policy.HANDLERS_AFTER[PARTIAL] == ("success", "exit")
    assert policy.HANDLERS_AFTER[FAILED] == ("failure", "exit")
    assert policy.HANDLERS_AFTER[ABORTED] == ("abort", "exit") and policy.HANDLERS_AFTER[WAITING] == ("wait",)
