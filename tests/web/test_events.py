"""The event stream's bounds: topics are checked, and streams beyond the limit are refused with
503 (the page then polls), and a closed stream gives its slot back."""

from __future__ import annotations

import json

from tests.web.conftest import Data


def test_streams_beyond_the_limit_are_refused_and_slots_come_back(data: Data) -> None:
    from dagu.web.app import create_app

    client = create_app({**data.config(), "EVENT_STREAMS": 1}).test_client()
    first = client.get("/api/v1/events?topics=dags", buffered=False)
    assert first.status_code == 200 and first.mimetype == "text/event-stream"
    assert b"event: hello" in next(first.response)
    second = client.get("/api/v1/events?topics=dags", buffered=False)
    assert second.status_code == 503 and json.loads(second.data)["error"]["code"] == "too_many_streams"
    first.close()
    third = client.get("/api/v1/events?topics=dags", buffered=False)
    assert third.status_code == 200
    third.close()


def test_unknown_topics_are_refused(client) -> None:
    res = client.get("/api/v1/events?topics=secrets")
    assert res.status_code == 400 and json.loads(res.data)["error"]["code"] == "bad_topic"
    res = client.get("/api/v1/events")
    assert res.status_code == 400
    res = client.get("/api/v1/events/poll?topics=run:hello")
    assert res.status_code == 400 and "DAG/RUN_ID" in json.loads(res.data)["error"]["message"]
