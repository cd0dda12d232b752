"""The API behind the palette, the DAGs page's schedule in words and the Workers page, with Flask's
test client over a data dir written by real `dagu start` runs."""

from __future__ import annotations

import json
import time

from tests.web.conftest import Data


def body(res) -> dict:
    assert res.status_code == 200, res.data
    return json.loads(res.data)


def test_the_schedule_is_given_in_words_beside_the_cron_text(client) -> None:
    dags = {d["name"]: d for d in body(client.get("/api/v1/dags"))["dags"]}
    assert dags["hello"]["schedule"] == ["0 3 * * *"]
    assert dags["hello"]["schedule_words"] == ["at 03:00 every day"]
    assert dags["hello"]["next_run"] is not None
    assert dags["gated"]["schedule_words"] == [] and dags["broken"]["schedule_words"] == []
    assert body(client.get("/api/v1/dags/hello"))["schedule_words"] == ["at 03:00 every day"]


def test_search_finds_a_dag_by_part_of_its_name_best_first(client) -> None:
    res = body(client.get("/api/v1/search?q=hel"))
    assert res["dags"][0]["name"] == "hello"
    assert res["dags"][0]["positions"] == [0, 1, 2]
    assert res["dags"][0]["tags"] == ["demo", "nightly"]


def test_search_is_fuzzy_letters_in_order(client) -> None:
    names = [d["name"] for d in body(client.get("/api/v1/search?q=fky"))["dags"]]
    assert names == ["flaky"]
    assert body(client.get("/api/v1/search?q=ykf"))["dags"] == []


def test_search_finds_runs_by_id_with_their_status(client) -> None:
    res = body(client.get("/api/v1/search?q=h2"))
    assert [(r["dag"], r["run_id"]) for r in res["runs"]][0] == ("hello", "h2")
    assert res["runs"][0]["status"] == "succeeded" and res["runs"][0]["started_at"]


def test_dag_slash_run_narrows_runs_to_that_dag(client, data: Data) -> None:
    data.start("flaky", "h1-flaky")
    res = body(client.get("/api/v1/search?q=hello/h1"))
    assert res["dags"] == []
    assert [(r["dag"], r["run_id"]) for r in res["runs"]] == [("hello", "h1")]
    both = body(client.get("/api/v1/search?q=h1"))
    assert {(r["dag"], r["run_id"]) for r in both["runs"]} >= {("hello", "h1"), ("flaky", "h1-flaky")}
    every_run = body(client.get("/api/v1/search?q=hello/"))
    assert {r["run_id"] for r in every_run["runs"]} == {"h1", "h2"} and every_run["dags"][0]["name"] == "hello"


def test_an_empty_query_lists_dags_by_name_and_a_miss_lists_nothing(client) -> None:
    res = body(client.get("/api/v1/search?q="))
    assert [d["name"] for d in res["dags"]] == ["broken", "flaky", "gated", "hello", "slow"]
    assert res["runs"] == []
    assert [d["ok"] for d in res["dags"]][0] is False
    assert body(client.get("/api/v1/search?q=zzzz")) == {"query": "zzzz", "dags": [], "runs": []}
    assert len(body(client.get("/api/v1/search?q=&limit=2"))["dags"]) == 2
    assert client.get("/api/v1/search?q=a&limit=0").status_code == 400


def test_workers_are_listed_with_health_labels_and_running_runs(client, data: Data) -> None:
    from dagu.distributed.records import WorkerRecord, write_worker

    assert body(client.get("/api/v1/workers"))["workers"] == []
    before = body(client.get("/api/v1/events/poll?topics=workers"))["fingerprints"]["workers"]
    now = time.time()
    write_worker(str(data.home), WorkerRecord(id="gpu-1", host="box", pid=4242, labels={"gpu": "true"},
                                             max_active_runs=2, heartbeat_sec=5.0, started_at=now - 60,
                                             heartbeat_at=now, running=["hello/h1"]))
    write_worker(str(data.home), WorkerRecord(id="old-1", host="box", pid=7, labels={}, max_active_runs=1,
                                             heartbeat_sec=5.0, started_at=now - 3600, heartbeat_at=now - 600))
    res = body(client.get("/api/v1/workers"))
    assert [(w["id"], w["health"]) for w in res["workers"]] == [("gpu-1", "ok"), ("old-1", "lost")]
    gpu = res["workers"][0]
    assert gpu["labels"] == {"gpu": "true"} and gpu["running"] == ["hello/h1"] and gpu["max_active_runs"] == 2
    assert abs(gpu["last_heartbeat"] - now) < 1e-3 and res["now"] >= now
    after = body(client.get("/api/v1/events/poll?topics=workers"))["fingerprints"]["workers"]
    assert after != before  # the Workers page re-reads on this topic


def test_every_page_has_the_palette_and_the_workers_page_is_in_the_nav(client) -> None:
    for url in ("/dags", "/dags/hello", "/runs/hello/h1", "/queues", "/workers", "/system"):
        page = client.get(url).data.decode()
        assert 'id="palette-open"' in page and "palette.js" in page, url
        assert 'href="/workers"' in page, url
    assert "workers.js" in client.get("/workers").data.decode()
    assert 'id="gantt"' in client.get("/runs/hello/h1").data.decode()
    assert 'id="duration-chart-box"' in client.get("/dags/hello").data.decode()


def test_search_never_shows_a_folder_whose_name_is_not_a_run_id(client, data: Data) -> None:
    (data.home / "runs" / "hello" / "h1 bad!").mkdir()
    (data.home / "runs" / "hello" / ".h1-hidden").mkdir()
    runs = body(client.get("/api/v1/search?q=h1"))["runs"]
    assert [r["run_id"] for r in runs if r["dag"] == "hello"] == ["h1"]


def test_a_run_page_comes_with_the_tail_of_the_log_it_shows_first(client) -> None:
    html = client.get("/runs/hello/h1").get_data(as_text=True)
    initial = json.loads(html.split('id="initial-data">', 1)[1].split("</script>", 1)[0])
    log = initial["log"]
    assert (log["step"], log["stream"], log["offset"]) == ("greet", "stdout", 0)
    assert log["text"].startswith("hello world\n1\n2\n") and log["next_offset"] == log["size"] == len(log["text"])
    api = client.get("/api/v1/runs/hello/h1/steps/greet/log?stream=stdout&tail=65536").get_json()
    assert {k: api[k] for k in ("offset", "next_offset", "size", "text")} == \
        {k: log[k] for k in ("offset", "next_offset", "size", "text")}  # what the API would have sent
