"""`dagu retry` and a resume after an approval decision: what of the earlier run is kept.

A retry keeps succeeded and skipped steps (and their outputs) and puts the rest
back in line; a resume keeps failed steps too (and whether continue_on
tolerated them): it only runs what has not run yet.  An approved step keeps its
approver's inputs as outputs, and a router its choice.
"""

from __future__ import annotations

from collections.abc import Callable

from dagu.engine.evaluate import StepFacts
from dagu.engine.graph import StepGraph
from dagu.engine.scope import Scopes
from dagu.store.state import ABORTED, FAILED, SKIPPED, SUCCEEDED, RunStatus


def restore(graph: StepGraph, scopes: Scopes, previous: RunStatus, resume: bool,
            reset: Callable[[str], None]) -> None:
    """Mark kept steps done in the graph and their facts in the scopes; `reset(step)` for the others."""
    keep = (SUCCEEDED, SKIPPED, FAILED, ABORTED) if resume else (SUCCEEDED, SKIPPED)
    outputs = scopes.output_order
    for sid, node in graph.nodes.items():
        old = previous.steps.get(sid)
        if old is None or old.status not in keep:
            node.attempt = len(old.attempts) if old else 0
            reset(sid)
            continue
        chosen = old.outputs.get("selected", []) if old.outputs is not None else None
        graph.restore(sid, old.status, old.tolerated, chosen)
        if old.approval and old.approval.get("decision") == "approved":
            node.approved = True
            outputs.extend((sid, name, str(value)) for name, value in (old.approval.get("inputs") or {}).items())
        node.attempt = len(old.attempts)
        last = old.last
        scopes.facts[sid] = StepFacts(output=old.output, outputs=old.outputs, stdout=last.stdout if last else None,
                                      stderr=last.stderr if last else None,
                                      exit_code=last.exit_code if last else None)
        if old.output is not None and old.output_name:
            outputs.append((sid, old.output_name, old.output))
