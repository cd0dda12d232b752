"""Names and paths from requests never reach outside the DAGs folder or the data dir.

Every route of `app.url_map` that takes a variable gets, in each variable, `../`, absolute paths,
NUL bytes and their URL-encoded spellings; none may answer 2xx or 500, or show a byte of a file
outside, or change one.  Symbolic links that point outside (a DAG file, a run folder, a DAG's
runs folder) are refused by the service.  Open local mode (an admin's rights), so what refuses
is the path check, not the role check."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.web.conftest import Data, make_data

SECRET = "OUTSIDE-SECRET-7f3a"
EVIL = ["..", "../hello", "../../etc/passwd", "/etc/passwd", "%2e%2e", "%2e%2e%2fhello", "%2E%2E%2F%2E%2E%2Fetc",
        "..%2f..%2foutside%2fsecret.yaml", "%2fetc%2fpasswd", "a%00b", "%00", "hello%00", "..%5c..%5coutside",
        "....//....//outside"]
GOOD = {"name": "hello", "dag": "hello", "run_id": "h1", "step": "greet", "action": "approve",
        "filename": "app.css", "path": "app.css"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Data, Path]:
    data = make_data(tmp_path_factory.mktemp("paths"))
    data.start("hello", "h1")
    outside = data.root / "outside"
    outside.mkdir()
    (outside / "secret.yaml").write_text(f"description: {SECRET}\nsteps:\n  - id: a\n    command: echo {SECRET}\n")
    os.symlink(outside / "secret.yaml", data.dags / "linked.yaml")
    # a copy of a real run, outside the data dir, reached by symlinks from inside it
    shutil.copytree(data.home / "runs" / "hello" / "h1", outside / "run")
    os.symlink(outside / "run", data.home / "runs" / "hello" / "linkedrun")
    shutil.copytree(data.home / "runs" / "hello", outside / "dagruns")
    os.symlink(outside / "dagruns", data.home / "runs" / "linkeddag")
    return data, outside


@pytest.fixture(scope="module")
def app(world):
    from dagu.web.app import create_app

    return create_app(world[0].config())


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def routes_with_variables(app) -> list:
    return [rule for rule in app.url_map.iter_rules() if rule.arguments]


def test_every_route_variable_refuses_traversal(app, world) -> None:
    data, outside = world
    before = snapshot(outside)
    rules = routes_with_variables(app)
    assert {"dags.get_dag", "dags.put_spec", "runs.step_log", "runs.decide", "pages.run"} <= {r.endpoint for r in rules}
    client = app.test_client()
    tried = 0
    for rule in rules:
        for variable in rule.arguments:
            for evil in EVIL:
                url = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>",
                             lambda m: evil if m.group(1) == variable else GOOD[m.group(1)], rule.rule)
                for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                    res = client.open(url, method=method, json={"text": "steps: []\n"},
                                      headers={"X-Requested-With": "test"})
                    tried += 1
                    text = res.get_data(as_text=True)
                    assert res.status_code in (400, 404, 405, 308), (method, url, res.status_code, text[:300])
                    assert SECRET not in text and "root:x:0:0" not in text, (method, url)
                    if url.startswith("/api/") and res.status_code in (400, 404):
                        assert set(json.loads(text)["error"]) >= {"code", "message"}, (method, url)
    assert tried > 300
    assert snapshot(outside) == before
    assert os.path.islink(data.dags / "linked.yaml")


@pytest.mark.parametrize("url", [
    "/api/v1/dags/%2e%2e", "/api/v1/dags/hello%00", "/api/v1/runs/hello/..", "/api/v1/runs/hello/h1%00",
    "/api/v1/runs/%2e%2e/h1", "/dags/%2e%2e", "/runs/hello/%2e%2e",
])
def test_encoded_dots_and_nul_in_a_name_are_a_400_naming_the_rule(app, url: str) -> None:
    res = app.test_client().get(url)
    assert res.status_code == 400, (url, res.status_code)
    if url.startswith("/api/"):
        assert json.loads(res.data)["error"]["code"] == "bad_name"


@pytest.mark.parametrize("query", [
    "/api/v1/runs?dag=../hello", "/api/v1/runs?dag=%2e%2e%2fhello", "/api/v1/runs?dag=hello%00",
    "/api/v1/events/poll?topics=run:../../etc/h1", "/api/v1/events/poll?topics=run:hello/..%2f..",
    "/api/v1/events/poll?topics=dag:%2e%2e", "/api/v1/runs/hello/h1/steps/greet/log?stream=../../x",
])
def test_names_in_query_strings_are_checked_too(app, query: str) -> None:
    res = app.test_client().get(query)
    assert res.status_code in (400, 404, 409), (query, res.status_code)
    assert SECRET not in res.get_data(as_text=True)


def test_a_dag_file_linked_from_outside_is_never_read_or_written_by_the_editor(app, world) -> None:
    data, outside = world
    client = app.test_client()
    res = client.get("/api/v1/dags/linked/spec")
    assert res.status_code == 400 and "outside the DAGs folder" in json.loads(res.data)["error"]["message"]
    res = client.put("/api/v1/dags/linked/spec", json={"text": "steps:\n  - id: a\n    command: echo pwned\n"})
    assert res.status_code == 400
    res = client.post("/api/v1/dags/linked/spec/check", json={"text": "steps: []\n"})
    assert res.status_code == 400
    assert SECRET in (outside / "secret.yaml").read_text() and os.path.islink(data.dags / "linked.yaml")


@pytest.mark.parametrize("url", ["/api/v1/runs/hello/linkedrun", "/api/v1/runs/hello/linkedrun/outputs",
                                 "/api/v1/runs/hello/linkedrun/steps/greet/log", "/runs/hello/linkedrun",
                                 "/api/v1/runs/linkeddag/h1", "/api/v1/runs/linkeddag/h1/steps/greet/log"])
def test_a_run_folder_linked_from_outside_is_refused(app, url: str) -> None:
    res = app.test_client().get(url)
    assert res.status_code == 400, (url, res.status_code)
    assert "outside" in res.get_data(as_text=True)


@pytest.mark.parametrize("method,url", [("POST", "/api/v1/runs/hello/linkedrun/stop"),
                                        ("POST", "/api/v1/runs/hello/linkedrun/retry"),
                                        ("DELETE", "/api/v1/runs/hello/linkedrun/queue"),
                                        ("POST", "/api/v1/runs/linkeddag/h1/steps/greet/approve")])
def test_no_action_reaches_a_linked_run_folder(app, world, method: str, url: str) -> None:
    before = snapshot(world[1])
    res = app.test_client().open(url, method=method, json={})
    assert res.status_code == 400, (url, res.status_code, res.data[:300])
    assert snapshot(world[1]) == before
