"""Routing without a broker: labels, the queues a worker consumes, the queue a selector names."""

from __future__ import annotations

import pytest

from dagu.distributed.routing import (ANY_QUEUE, MAX_LABELS, RoutingError, parse_labels, queue_for, selector_of,
                                      worker_queues)


def test_a_worker_consumes_one_queue_per_subset_of_its_labels_plus_any() -> None:
    queues = worker_queues(parse_labels("gpu=true,region=eu"))
    assert queues == [ANY_QUEUE, "dagu.l.gpu=true", "dagu.l.region=eu", "dagu.l.gpu=true,region=eu"]
    assert len(worker_queues({f"k{i}": "v" for i in range(MAX_LABELS)})) == 2 ** MAX_LABELS


@pytest.mark.parametrize(("selector", "labels", "matches"), [
    ({"gpu": True}, "gpu=true,region=eu", True),
    ({"region": "eu", "gpu": "true"}, "gpu=true,region=eu", True),
    ({"gpu": True, "region": "us"}, "gpu=true,region=eu", False),
    ({"gpu": False}, "gpu=true", False),
    ({"n": 1}, "n=1", True),
    ({}, "", True),
    ({}, "gpu=true", True),
    ({"gpu": True}, "", False),
])
def test_a_selector_matches_exactly_the_workers_having_all_its_labels(selector: dict, labels: str,
                                                                       matches: bool) -> None:
    assert (queue_for(selector) in worker_queues(parse_labels(labels))) is matches


def test_bad_labels_are_refused_with_what_to_change() -> None:
    with pytest.raises(RoutingError, match="at most 6"):
        parse_labels(",".join(f"k{i}=v" for i in range(7)))
    with pytest.raises(RoutingError, match="no value"):
        parse_labels("gpu")
    with pytest.raises(RoutingError, match="letters, digits"):
        parse_labels("gpu=a b")
    with pytest.raises(RoutingError, match="twice"):
        parse_labels("a=1,a=2")


def test_no_selector_and_local_stay_local() -> None:
    assert selector_of({}) is None
    assert selector_of({"worker_selector": "local"}) is None
    assert selector_of({"worker_selector": {}}) == {}
    assert selector_of({"worker_selector": {"gpu": True}}) == {"gpu": True}
