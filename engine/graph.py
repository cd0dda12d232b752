"""The graph walk of a run, as plain logic with no I/O (ninja's Plan): which steps are ready, and
what a finished step means for the steps after it.

The supervisor asks `ready_at_start()` once, then for every step that ends calls
`finish()`, which returns the steps that became ready.  Before it starts one of
them it asks `verdict()`: a step after a failure is not started, a step after a
skipped step is skipped (unless that step says continue_on.skipped), and a
target its router did not choose is skipped.  A step waiting for approval
releases nothing until a decision resumes the run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from dagu.spec.records import dataclass
from dagu.spec.plan import Step
from dagu.store.state import ABORTED, FAILED, NOT_STARTED, PARTIAL, SKIPPED, SUCCEEDED, WAITING


@dataclass(eq=False)
class Node:
    """One step (or handler) as the run tracks it: where it stands and its attempt counters."""

    step: Step
    handler: str | None = None
    status: str = NOT_STARTED
    done: bool = False
    tolerated: bool = False  # failed or skipped, but the run goes on as if it had not
    waiting: int = 0  # dependencies not yet done
    attempt: int = 0  # the number of the current/last attempt
    tries: int = 0  # runs in the current retry sequence
    repeats: int = 0  # runs in the current repeat sequence
    approved: bool = False

    @property
    def key(self) -> str:
        return f"handler:{self.handler}" if self.handler else self.step.id


class StepGraph:
    """The steps of one DAG run and their dependencies."""

    def __init__(self, steps: Sequence[Step], order: Iterable[str]) -> None:
        self.nodes: dict[str, Node] = {s.id: Node(s) for s in steps}
        self.order = list(order)
        self.dependents: dict[str, list[str]] = {sid: [] for sid in self.nodes}
        for s in steps:
            for d in s.depends:
                self.dependents[d].append(s.id)
        self.routers = {s.id: s for s in steps if s.routes}
        self.route_choice: dict[str, set[str]] = {}
        self._ancestors: dict[str, frozenset[str]] = {}

    def restore(self, sid: str, status: str, tolerated: bool, chosen: Iterable[str] | None = None) -> Node:
        """A step finished in an earlier attempt of the run (`dagu retry`, a resume): done as it was."""
        node = self.nodes[sid]
        node.status, node.tolerated, node.done = status, tolerated, True
        if chosen is not None and sid in self.routers:
            self.route_choice[sid] = set(chosen)
        return node

    def ready_at_start(self) -> list[Node]:
        """Count what each step waits for; the steps that wait for nothing, in plan order."""
        for sid in self.order:
            node = self.nodes[sid]
            if not node.done:
                node.waiting = sum(1 for d in node.step.depends if not self.nodes[d].done)
        return [self.nodes[sid] for sid in self.order if not self.nodes[sid].done and self.nodes[sid].waiting == 0]

    def verdict(self, node: Node) -> tuple[str, str] | None:
        """Whether a step whose dependencies are done must not run: (status, reason), or None.

        A target its router did not choose is skipped but tolerated: upstream runs what
        depends on it anyway.
        """
        skipped_by = None
        for d in node.step.depends:
            dep = self.nodes[d]
            if dep.status in (FAILED, ABORTED) and not dep.tolerated:
                return NOT_STARTED, f"not run: step {d!r} {dep.status}"
            if dep.status == NOT_STARTED:
                return NOT_STARTED, f"not run: step {d!r} did not run"
            if dep.status == SKIPPED and not dep.step.continue_on.skipped and not dep.tolerated:
                skipped_by = skipped_by or f"skipped because step {d!r} was skipped"
        if skipped_by:
            return SKIPPED, skipped_by
        for d in node.step.depends:
            if d in self.routers and node.step.id in self.route_targets(d) \
                    and node.step.id not in self.route_choice.get(d, set()):
                node.tolerated = True
                return SKIPPED, f"skipped: router {d!r} did not choose this step"
        return None

    def route_targets(self, router: str) -> set[str]:
        return {t for r in self.routers[router].routes for t in r.targets}

    def choose(self, router: str, chosen: Iterable[str]) -> None:
        """What a router step decided: only these of its targets run."""
        self.route_choice[router] = set(chosen)

    def finish(self, node: Node, status: str) -> list[Node]:
        """The step is done for this run: the dependents that now wait for nothing."""
        node.status = status
        node.done = True
        if node.handler is not None or status == WAITING:  # a waiting step releases nothing yet
            return []
        released = []
        for sid in self.dependents.get(node.step.id, ()):
            dep = self.nodes[sid]
            if dep.done:
                continue
            dep.waiting -= 1
            if dep.waiting == 0:
                released.append(dep)
        return released

    def ancestors(self, sid: str) -> frozenset[str]:
        """Every step this one depends on, directly or not (whose outputs it may read)."""
        found = self._ancestors.get(sid)
        if found is None:
            seen: set[str] = set()
            stack = list(self.nodes[sid].step.depends)
            while stack:
                d = stack.pop()
                if d not in seen:
                    seen.add(d)
                    stack.extend(self.nodes[d].step.depends)
            found = self._ancestors[sid] = frozenset(seen)
        return found

    def outcome(self) -> tuple[str, list[str]]:
        """The run's status once no step can start (stops and timeouts aside), and the steps
        that wait for approval."""
        nodes = list(self.nodes.values())
        if any(n.status in (FAILED, ABORTED) and not n.tolerated for n in nodes):
            return FAILED, []
        waiting = [n.step.id for n in nodes if n.status == WAITING]
        if waiting:
            return WAITING, waiting
        if any(n.status == FAILED and n.tolerated for n in nodes):
            return PARTIAL, []
        return SUCCEEDED, []
