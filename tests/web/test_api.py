"""The JSON API with Flask's test client, over a data dir written by real `dagu start` runs."""

from __future__ import annotations

import json
import urllib.parse

import pytest

from tests.web.conftest import POST, Data, run_status, wait_until


def body(res) -> dict:
    return json.loads(res.data)


def test_list_dags_shows_schedule_tags_recent_runs_and_diagnostics(client) -> None:
    res = client.get("/api/v1/dags")
    assert res.status_code == 200
    dags = {d["name"]: d for d in body(res)["dags"]}
    assert set(dags) == {"hello", "gated", "slow", "flaky", "broken"}
    hello = dags["hello"]
    assert hello["tags"] == ["demo", "nightly"] and hello["schedule"] == ["0 3 * * *"]
    assert hello["next_run"] is not None
    assert [r["run_id"] for r in hello["runs"]][:2] == ["h2", "h1"]
    assert hello["last_status"] == "succeeded"
    broken = dags["broken"]
    assert broken["ok"] is False and broken["runs"] == []
    [diag] = [d for d in broken["diagnostics"] if d["severity"] == "error"]
    assert (diag["line"], diag["col"], diag["code"]) == (3, 5, "unknown-key")
    assert "comand" in diag["message"]


def test_one_dag_has_its_graph_params_yaml_and_history(client) -> None:
    dag = body(client.get("/api/v1/dags/hello"))
    assert [n["id"] for n in dag["graph"]["nodes"]] == ["greet", "after"]
    assert dag["graph"]["edges"] == [["greet", "after"]]
    [param] = dag["params"]
    assert (param["name"], param["default"], param["enum"]) == ("WHO", "world", ["world", "moon"])
    assert "says hello twice" in dag["yaml"]
    assert [r["run_id"] for r in dag["history"]][:2] == ["h2", "h1"]


def test_a_run_has_steps_attempts_exit_usage_and_outputs(client) -> None:
    run = body(client.get("/api/v1/runs/hello/h2"))
    assert run["status"] == "succeeded" and run["params"] == ["WHO=moon"]
    greet = run["steps"]["greet"]
    [attempt] = greet["attempts"]
    assert attempt["exit_code"] == 0
    assert {"user_sec", "sys_sec", "peak_rss_bytes", "read_bytes", "write_bytes"} <= set(attempt["usage"])
    assert run["graph"]["edges"] == [["greet", "after"]]
    outputs = body(client.get("/api/v1/runs/hello/h2/outputs"))
    assert outputs["steps"]["greet"]["output"].startswith("hello moon")


def test_runs_list_filters_and_pages(client) -> None:
    page = body(client.get("/api/v1/runs?dag=hello&limit=1"))
    assert page["total"] >= 2 and len(page["runs"]) == 1 and page["runs"][0]["dag"] == "hello"
    assert body(client.get("/api/v1/runs?status=failed&dag=hello"))["runs"] == []


def test_a_step_log_is_read_by_byte_range_and_tail(client) -> None:
    first = body(client.get("/api/v1/runs/hello/h1/steps/greet/log?offset=0&limit=12"))
    assert first["text"] == "hello world\n" and first["next_offset"] == 12
    size = first["size"]
    assert size > 8000  # seq 1 2000
    more = body(client.get(f"/api/v1/runs/hello/h1/steps/greet/log?offset={first['next_offset']}&limit=2"))
    assert more["text"] == "1\n" and more["offset"] == 12
    tail = body(client.get("/api/v1/runs/hello/h1/steps/greet/log?tail=5"))
    assert tail["text"] == "2000\n" and tail["next_offset"] == size
    raw = client.get("/api/v1/runs/hello/h1/steps/greet/log?offset=6&limit=5&format=raw")
    assert raw.data == b"world" and raw.headers["X-Next-Offset"] == "11"
    res = client.get("/api/v1/runs/hello/h1/steps/greet/log?limit=99999999")
    assert res.status_code == 400 and "limit" in body(res)["error"]["message"]


def test_start_with_params_runs_detached(client, data: Data) -> None:
    res = client.post("/api/v1/dags/hello/start", json={"params": {"WHO": "moon"}})
    assert res.status_code == 202, res.data
    run_id = body(res)["run_id"]
    wait_until(lambda: run_status(client, "hello", run_id) == "succeeded", "the started run never succeeded")
    run = body(client.get(f"/api/v1/runs/hello/{run_id}"))
    assert run["params"] == ["WHO=moon"]


def test_a_broken_dag_is_not_started_and_says_why(client) -> None:
    res = client.post("/api/v1/dags/broken/start", json={})
    assert res.status_code == 422
    err = body(res)["error"]
    assert err["code"] == "does_not_compile" and err["diagnostics"][0]["line"] == 3


def test_enqueue_lists_the_run_in_its_queue_and_dequeue_takes_it_out(client) -> None:
    res = client.post("/api/v1/dags/flaky/enqueue", json={})
    assert res.status_code == 202
    run_id = body(res)["run_id"]
    queues = body(client.get("/api/v1/queues"))["queues"]
    assert any(i["run_id"] == run_id for q in queues for i in q["items"])
    assert client.delete(f"/api/v1/runs/flaky/{run_id}/queue", **POST).status_code == 200
    queues = body(client.get("/api/v1/queues"))["queues"]
    assert not any(i["run_id"] == run_id for q in queues for i in q["items"])


def test_stop_one_run(client, data: Data) -> None:
    run_id = body(client.post("/api/v1/dags/slow/start", json={}))["run_id"]
    wait_until(lambda: run_status(client, "slow", run_id) == "running", "the slow run never ran")
    res = client.post(f"/api/v1/runs/slow/{run_id}/stop", **POST)
    assert res.status_code == 202, res.data
    wait_until(lambda: run_status(client, "slow", run_id) == "aborted", "the stopped run was not aborted")
    res = client.post(f"/api/v1/runs/slow/{run_id}/stop", **POST)
    assert res.status_code == 409 and "not running" in body(res)["error"]["message"]


def test_retry_from_a_step(client, data: Data) -> None:
    data.start("flaky", "f1")
    assert run_status(client, "flaky", "f1") == "failed"
    (data.root / "ok").write_text("")
    res = client.post("/api/v1/runs/flaky/f1/retry", json={"step": "check"})
    assert res.status_code == 202
    wait_until(lambda: run_status(client, "flaky", "f1") == "succeeded", "the retried run never succeeded")
    run = body(client.get("/api/v1/runs/flaky/f1"))
    assert len(run["steps"]["check"]["attempts"]) == 2 and len(run["steps"]["first"]["attempts"]) == 1


def test_approve_with_inputs(client, data: Data) -> None:
    data.start("gated", "g1")
    assert run_status(client, "gated", "g1") == "waiting"
    res = client.post("/api/v1/runs/gated/g1/steps/gate/approve", json={"inputs": {}})
    assert res.status_code == 409 and "TICKET" in body(res)["error"]["message"]
    res = client.post("/api/v1/runs/gated/g1/steps/gate/approve", json={"inputs": {"TICKET": "OPS-1"}})
    assert res.status_code == 202, res.data
    wait_until(lambda: run_status(client, "gated", "g1") == "succeeded", "the approved run never finished")
    run = body(client.get("/api/v1/runs/gated/g1"))
    assert run["steps"]["gate"]["approval"]["inputs"] == {"TICKET": "OPS-1"}


def test_reject_fails_the_waiting_run(client, data: Data) -> None:
    data.start("gated", "g2")
    res = client.post("/api/v1/runs/gated/g2/steps/gate/reject", json={"reason": "no"})
    assert res.status_code == 202, res.data
    wait_until(lambda: run_status(client, "gated", "g2") == "failed", "the rejected run never failed")
    res = client.post("/api/v1/runs/gated/g2/steps/gate/bogus", json={})
    assert res.status_code == 404


def test_system_reports_scheduler_and_data_dir(client) -> None:
    system = body(client.get("/api/v1/system"))
    assert system["scheduler"]["alive"] is False and system["scheduler"]["state"] == "not running"
    assert system["data_dir"]["runs"] >= 2 and system["data_dir"]["runs_bytes"] > 0
    assert system["data_dir"]["dags"]["hello"]["runs"] >= 2
    assert body(client.get("/api/v1/system/health")) == {"status": "ok"}


def test_poll_fingerprints_change_when_a_run_does(client, data: Data) -> None:
    before = body(client.get("/api/v1/events/poll?topics=dags,dag:hello"))["fingerprints"]
    data.start("hello", "h-poll")
    after = body(client.get("/api/v1/events/poll?topics=dags,dag:hello"))["fingerprints"]
    assert before["dags"] != after["dags"] and before["dag:hello"] != after["dag:hello"]
    again = body(client.get("/api/v1/events/poll?topics=dags,dag:hello"))["fingerprints"]
    assert again == after


HOSTILE = ["..", "../home", "%2e%2e", "..%2Fhome", "%2Fetc%2Fpasswd", "a%00b", ".hidden", "%252e%252e"]


@pytest.mark.parametrize("name", HOSTILE)
@pytest.mark.parametrize("route", [
    "GET /api/v1/dags/{n}", "POST /api/v1/dags/{n}/start", "POST /api/v1/dags/{n}/enqueue",
    "POST /api/v1/dags/{n}/stop", "GET /api/v1/runs/{n}/h1", "GET /api/v1/runs/hello/{n}",
    "GET /api/v1/runs/hello/{n}/outputs", "GET /api/v1/runs/{n}/h1/steps/greet/log",
    "GET /api/v1/runs/hello/h1/steps/{n}/log", "POST /api/v1/runs/hello/{n}/stop",
    "POST /api/v1/runs/{n}/h1/retry", "POST /api/v1/runs/hello/{n}/steps/gate/approve",
    "DELETE /api/v1/runs/{n}/h1/queue", "GET /api/v1/runs?dag={n}", "GET /api/v1/events/poll?topics=run:{n}/h1",
    "GET /api/v1/events/poll?topics=dag:{n}", "GET /dags/{n}", "GET /runs/{n}/h1",
])
def test_names_that_leave_their_folder_are_refused(client, route: str, name: str) -> None:
    method, url = route.split(" ")
    res = client.open(url.replace("{n}", name), method=method, json={} if method != "GET" else None)
    assert res.status_code in (400, 404), (route, name, res.status_code, res.data[:300])
    if url.startswith("/api/"):
        err = body(res)["error"]
        assert err["code"] in ("bad_name", "not_found", "bad_request", "bad_topic") and "Traceback" not in err["message"]
    else:
        assert b"Traceback" not in res.data


def test_errors_are_json_with_a_code_and_message(client) -> None:
    res = client.get("/api/v1/dags/nosuch")
    assert res.status_code == 404 and body(res)["error"]["code"] == "not_found"
    res = client.get("/api/v1/runs/hello/nosuch")
    assert res.status_code == 404 and "nosuch" in body(res)["error"]["message"]
    res = client.get("/api/v1/runs/hello/h1/steps/nosuch/log")
    assert res.status_code == 404 and "no step 'nosuch'" in body(res)["error"]["message"]
    res = client.post("/api/v1/dags/hello/start", data="[1]", content_type="application/json")
    assert res.status_code == 400 and body(res)["error"]["code"] == "bad_request"


def test_cross_site_posts_are_refused(client) -> None:
    res = client.post("/api/v1/dags/hello/start", data="a=1", content_type="application/x-www-form-urlencoded")
    assert res.status_code == 403 and body(res)["error"]["code"] == "cross_origin"
    res = client.post("/api/v1/dags/hello/start", json={}, headers={"Origin": "http://evil.example"})
    assert res.status_code == 403
    assert client.get("/api/v1/dags").status_code == 200  # reads need nothing


def test_pages_render(client) -> None:
    for url in ("/dags", "/dags/hello", "/runs/hello/h1", "/queues", "/system"):
        res = client.get(url)
        assert res.status_code == 200, url
        assert b'id="initial-data"' in res.data
    assert client.get("/").status_code == 302
    assert urllib.parse.urlsplit(client.get("/").headers["Location"]).path == "/dags"
