"""GET /metrics over the real data dir of conftest.py: Prometheus text whose values match the runs."""

from __future__ import annotations

import json
import re

import pytest

from tests.web.conftest import Data

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> tuple[dict[str, str], dict[tuple[str, frozenset], float]]:
    """(TYPE of each family, value of each sample by name and labels); every line must parse."""
    types: dict[str, str] = {}
    samples: dict[tuple[str, frozenset], float] = {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _h, _t, name, kind = line.split(" ", 3)
            assert name not in types, f"TYPE twice for {name}"
            types[name] = kind
        elif line.startswith("# HELP "):
            continue
        else:
            match = SAMPLE.match(line)
            assert match, f"not an exposition line: {line!r}"
            name, labels, value = match.groups()
            key = (name, frozenset(LABEL.findall(labels or "")))
            assert key not in samples, f"sample twice: {line}"
            samples[key] = float(value)
            family = re.sub(r"_(bucket|sum|count)$", "", name)
            assert name in types or family in types, f"{name} has no TYPE"
    return types, samples


def value(samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@pytest.fixture(scope="module")
def metrics_app(data: Data):
    from dagu.web.app import create_app

    return create_app({**data.config(), "METRICS_CACHE_SEC": 0})


def test_metrics_count_runs_by_dag_and_status(metrics_app, data: Data) -> None:
    client = metrics_app.test_client()
    res = client.get("/metrics")
    assert res.status_code == 200
    assert res.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    types, samples = parse(res.get_data(as_text=True))
    assert types["dagu_up"] == "gauge" and value(samples, "dagu_up") == 1
    runs = json.loads(client.get("/api/v1/runs?limit=1000").data)["runs"]
    expected: dict[tuple[str, str], int] = {}
    for run in runs:
        expected[(run["dag"], run["status"])] = expected.get((run["dag"], run["status"]), 0) + 1
    got = {(dict(labels)["dag"], dict(labels)["status"]): v for (name, labels), v in samples.items()
           if name == "dagu_runs"}
    assert got == expected and got[("hello", "succeeded")] >= 2


def test_step_durations_are_a_histogram_of_the_recorded_attempts(metrics_app) -> None:
    client = metrics_app.test_client()
    types, samples = parse(client.get("/metrics").get_data(as_text=True))
    assert types["dagu_step_duration_seconds"] == "histogram"
    hello_runs = json.loads(client.get("/api/v1/runs?dag=hello&limit=50").data)["runs"]
    durations = []
    for row in hello_runs:
        run = json.loads(client.get(f"/api/v1/runs/hello/{row['run_id']}").data)
        durations += [a["finished_at"] - a["started_at"] for s in run["steps"].values() for a in s["attempts"]
                      if a["finished_at"] is not None]
    assert value(samples, "dagu_step_duration_seconds_count", dag="hello") == len(durations) > 0
    assert value(samples, "dagu_step_duration_seconds_sum", dag="hello") == pytest.approx(sum(durations), abs=1e-3)
    assert value(samples, "dagu_step_duration_seconds_bucket", dag="hello", le="+Inf") == len(durations)
    assert value(samples, "dagu_step_duration_seconds_bucket", dag="hello", le="0.1") == \
        sum(1 for d in durations if d <= 0.1)
    buckets = sorted((float(dict(labels)["le"].replace("+Inf", "inf")), v) for (name, labels), v in samples.items()
                     if name == "dagu_step_duration_seconds_bucket" and dict(labels)["dag"] == "hello")
    assert [v for _le, v in buckets] == sorted(v for _le, v in buckets), "buckets are cumulative"


def test_scheduler_and_queues(metrics_app, data: Data) -> None:
    client = metrics_app.test_client()
    _types, samples = parse(client.get("/metrics").get_data(as_text=True))
    assert value(samples, "dagu_scheduler_up") == 0  # no scheduler runs over the test data dir
    assert value(samples, "dagu_scheduler_heartbeat_age_seconds") is None  # it never beat
    res = client.post("/api/v1/dags/hello/enqueue", json={"params": {"WHO": "moon"}},
                      headers={"X-Requested-With": "test"})
    assert res.status_code == 202
    queue = json.loads(res.data)["queue"]
    try:
        _types, samples = parse(client.get("/metrics").get_data(as_text=True))
        queues = json.loads(client.get("/api/v1/queues").data)["queues"]
        waiting = {q["name"]: len(q["items"]) for q in queues}
        assert value(samples, "dagu_queue_length", queue=queue) == waiting[queue] >= 1
    finally:
        client.delete(f"/api/v1/runs/hello/{json.loads(res.data)['run_id']}/queue",
                      headers={"X-Requested-With": "test"})


def test_a_scrape_is_cached_on_the_app(data: Data) -> None:
    from dagu.web.app import create_app

    app = create_app({**data.config(), "METRICS_CACHE_SEC": 3600})
    client = app.test_client()
    first = client.get("/metrics").get_data(as_text=True)
    data.start("hello", "metrics-cache")
    assert client.get("/metrics").get_data(as_text=True) == first  # within the TTL: the same text
    other = create_app({**data.config(), "METRICS_CACHE_SEC": 3600}).test_client()  # no module-global cache
    _types, samples = parse(other.get("/metrics").get_data(as_text=True))
    _types, before = parse(first)
    assert value(samples, "dagu_runs", dag="hello", status="succeeded") == \
        value(before, "dagu_runs", dag="hello", status="succeeded") + 1


def test_metrics_need_a_login_once_users_exist(tmp_path) -> None:
    from dagu.service.users import add_user, create_token
    from dagu.web.app import create_app
    from tests.web.conftest import make_data

    data = make_data(tmp_path)
    add_user(str(data.home), "vera", "a-long-password", "viewer")
    app = create_app(data.config())
    client = app.test_client()
    assert client.get("/metrics").status_code in (302, 401)
    assert client.get("/api/v1/openapi.json").status_code == 401
    token = create_token(str(data.home), "prom", "viewer")
    res = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert res.status_code == 200 and "dagu_up 1" in res.get_data(as_text=True)
    login = client.post("/api/v1/auth/login", json={"user": "vera", "password": "a-long-password"})
    assert login.status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/api/v1/openapi.json").status_code == 200
