"""The graph walk without processes: readiness, propagation after failures and skips, routers,
approval waits."""

from __future__ import annotations

import pytest

from dagu.engine.graph import StepGraph
from dagu.spec.plan import ContinueOn, Matcher, Route, Step
from dagu.store.state import FAILED, NOT_STARTED, PARTIAL, SKIPPED, SUCCEEDED, WAITING


def graph(*steps: Step) -> StepGraph:
    return StepGraph(steps, [s.id for s in steps])


def step(sid: str, *depends: str, **kw) -> Step:
    return Step(id=sid, name=sid, depends=depends, **kw)


def test_roots_are_ready_at_start_in_plan_order() -> None:
    g = graph(step("a"), step("b"), step("c", "a", "b"))
    assert [n.step.id for n in g.ready_at_start()] == ["a", "b"]


def test_a_step_is_released_when_its_last_dependency_finishes() -> None:
    g = graph(step("a"), step("b"), step("c", "a", "b"))
    g.ready_at_start()
    assert g.finish(g.nodes["a"], SUCCEEDED) == []
    assert [n.step.id for n in g.finish(g.nodes["b"], SUCCEEDED)] == ["c"]


@pytest.mark.parametrize(("dep_status", "tolerated", "continue_skipped", "verdict"), [
    (SUCCEEDED, False, False, None),
    (FAILED, False, False, (NOT_STARTED, "not run: step 'a' failed")),
    (FAILED, True, False, None),
    (NOT_STARTED, False, False, (NOT_STARTED, "not run: step 'a' did not run")),
    (SKIPPED, False, False, (SKIPPED, "skipped because step 'a' was skipped")),
    (SKIPPED, False, True, None),
    (SKIPPED, True, False, None),
])
def test_verdict_after_a_dependency(dep_status: str, tolerated: bool, continue_skipped: bool, verdict) -> None:
    g = graph(step("a", continue_on=ContinueOn(skipped=continue_skipped)), step("b", "a"))
    g.nodes["a"].tolerated = tolerated
    g.ready_at_start()
    g.finish(g.nodes["a"], dep_status)
    assert g.verdict(g.nodes["b"]) == verdict


def test_a_failure_wins_over_a_skip_whatever_the_order() -> None:
    g = graph(step("a"), step("b"), step("c", "a", "b"))
    g.finish(g.nodes["a"], SKIPPED)
    g.finish(g.nodes["b"], FAILED)
    assert g.verdict(g.nodes["c"]) == (NOT_STARTED, "not run: step 'b' failed")


def test_a_router_target_not_chosen_is_skipped_but_tolerated() -> None:
    routes = (Route(Matcher(["x"]), ("left",)), Route(Matcher(["y"]), ("right",)))
    g = graph(step("r", routes=routes), step("left", "r"), step("right", "r"), step("join", "left", "right"))
    g.ready_at_start()
    g.choose("r", {"left"})
    released = g.finish(g.nodes["r"], SUCCEEDED)
    assert [n.step.id for n in released] == ["left", "right"]
    assert g.verdict(g.nodes["left"]) is None
    assert g.verdict(g.nodes["right"]) == (SKIPPED, "skipped: router 'r' did not choose this step")
    assert g.nodes["right"].tolerated
    g.finish(g.nodes["left"], SUCCEEDED)
    g.finish(g.nodes["right"], SKIPPED)
    assert g.verdict(g.nodes["join"]) is None  # what depends on an unchosen target still runs


def test_a_step_waiting_for_approval_releases_nothing() -> None:
    g = graph(step("gate"), step("after", "gate"))
    g.ready_at_start()
    assert g.finish(g.nodes["gate"], WAITING) == []
    assert g.nodes["after"].waiting == 1
    assert g.outcome() == (WAITING, ["gate"])


def test_restored_steps_are_done_and_not_ready_again() -> None:
    g = graph(step("a"), step("b", "a"))
    g.restore("a", SUCCEEDED, False)
    assert [n.step.id for n in g.ready_at_start()] == ["b"]


@pytest.mark.parametrize(("statuses", "tolerated", "outcome"), [
    ({"a": SUCCEEDED, "b": SUCCEEDED}, set(), SUCCEEDED),
    ({"a": SUCCEEDED, "b": FAILED}, set(), FAILED),
    ({"a": SUCCEEDED, "b": FAILED}, {"b"}, PARTIAL),
    ({"a": SKIPPED, "b": SUCCEEDED}, set(), SUCCEEDED),
])
def test_outcome(statuses: dict, tolerated: set, outcome: str) -> None:
    g = graph(step("a"), step("b"))
    for sid, status in statuses.items():
        g.nodes[sid].tolerated = sid in tolerated
        g.finish(g.nodes[sid], status)
    assert g.outcome()[0] == outcome


def test_ancestors_are_transitive() -> None:
    g = graph(step("a"), step("b", "a"), step("c", "b"), step("d"))
    assert g.ancestors("c") == {"a", "b"}
