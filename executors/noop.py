"""Noop steps: do nothing and succeed.

A join point in a graph, or (with `options.approval`, which is how the
compiler spells `type: hitl/approval/wait`) a step whose only job is to wait for
an approval: the engine applies the approval wait to any step that succeeds.
"""

from __future__ import annotations

from dagu.executors.base import Cancellation, StepIO, StepRequest, StepResult


def run(request: StepRequest, io: StepIO, cancel: Cancellation) -> StepResult:
    return StepResult(exit_code=0)
