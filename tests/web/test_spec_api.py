"""The DAG editor's API: read a spec, check unsaved text (the compiler's located diagnostics),
and save only what compiles (422 with the diagnostics, nothing written), keeps the DAG's name,
and was not changed on disk since it was loaded (409).  Flask's test client over real files."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest

from tests.web.conftest import make_data

GOOD = "steps:\n  - id: a\n    command: echo hi\n"


@pytest.fixture
def site(tmp_path: Path):
    from dagu.web.app import create_app

    data = make_data(tmp_path)
    (data.dags / "edit.yaml").write_text(GOOD)
    return data, create_app(data.config()).test_client()


def test_get_returns_the_text_and_its_hash(site) -> None:
    data, client = site
    res = client.get("/api/v1/dags/edit/spec")
    assert res.status_code == 200
    assert res.json["text"] == GOOD
    assert res.json["sha256"] == hashlib.sha256(GOOD.encode()).hexdigest()
    assert res.json["file"] == str(data.dags / "edit.yaml")


def test_check_reports_a_typo_at_its_line_and_writes_nothing(site) -> None:
    data, client = site
    res = client.post("/api/v1/dags/edit/spec/check", json={"text": "steps:\n  - id: a\n    comand: echo hi\n"})
    assert res.status_code == 200 and res.json["ok"] is False
    (diag,) = [d for d in res.json["diagnostics"] if d["severity"] == "error"]
    assert (diag["line"], diag["col"], diag["code"]) == (3, 5, "unknown-key")
    assert "did you mean 'command'?" in diag["notes"]
    assert (data.dags / "edit.yaml").read_text() == GOOD
    assert sorted(p.name for p in data.dags.iterdir()) == sorted(["edit.yaml", "hello.yaml", "gated.yaml", "slow.yaml",
                                                                  "flaky.yaml", "broken.yaml"])


def test_check_resolves_a_call_beside_the_file_as_the_save_would(site) -> None:
    data, client = site
    (data.dags / "child.yaml").write_text("steps:\n  - id: c\n    command: 'true'\n")
    text = "steps:\n  - id: a\n    call: child\n"
    assert client.post("/api/v1/dags/edit/spec/check", json={"text": text}).json["ok"] is True
    text = "steps:\n  - id: a\n    call: chlid\n"
    res = client.post("/api/v1/dags/edit/spec/check", json={"text": text}).json
    assert res["ok"] is False and res["diagnostics"][0]["code"] == "unknown-call-target"


def test_a_broken_save_is_refused_with_diagnostics_and_nothing_written(site) -> None:
    data, client = site
    res = client.put("/api/v1/dags/edit/spec", json={"text": "steps:\n  - id: a\n    comand: echo hi\n"})
    assert res.status_code == 422
    assert res.json["error"]["code"] == "spec_rejected"
    assert res.json["error"]["diagnostics"][0]["line"] == 3
    assert (data.dags / "edit.yaml").read_text() == GOOD
    assert not [p for p in data.dags.iterdir() if ".tmp" in p.name]


def test_a_good_save_is_written_and_served_next(site) -> None:
    data, client = site
    sha = client.get("/api/v1/dags/edit/spec").json["sha256"]
    new = "steps:\n  - id: a\n    command: echo bye\n"
    res = client.put("/api/v1/dags/edit/spec", json={"text": new, "base_sha256": sha})
    assert res.status_code == 200 and res.json["saved"] is True
    assert (data.dags / "edit.yaml").read_text() == new
    assert "echo bye" in client.get("/api/v1/dags/edit").json["yaml"]  # the index saw the change


def test_a_save_over_a_changed_file_is_a_conflict(site) -> None:
    data, client = site
    sha = client.get("/api/v1/dags/edit/spec").json["sha256"]
    (data.dags / "edit.yaml").write_text(GOOD.replace("hi", "someone else"))
    res = client.put("/api/v1/dags/edit/spec", json={"text": GOOD.replace("hi", "mine"), "base_sha256": sha})
    assert res.status_code == 409 and res.json["error"]["code"] == "conflict"
    assert "someone else" in (data.dags / "edit.yaml").read_text()


def test_a_save_that_renames_the_dag_is_refused(site) -> None:
    data, client = site
    res = client.put("/api/v1/dags/edit/spec", json={"text": "name: other\n" + GOOD})
    assert res.status_code == 422 and "renames the DAG" in res.json["error"]["message"]
    assert (data.dags / "edit.yaml").read_text() == GOOD


@pytest.mark.parametrize("body", [{}, {"text": 3}, {"text": "a\x00b"}])
def test_malformed_bodies_are_400(site, body) -> None:
    _, client = site
    assert client.put("/api/v1/dags/edit/spec", json=body).status_code == 400
    assert client.post("/api/v1/dags/edit/spec/check", json=body).status_code == 400


def test_a_dag_that_does_not_exist_is_404(site) -> None:
    _, client = site
    assert client.get("/api/v1/dags/nope/spec").status_code == 404
    assert client.put("/api/v1/dags/nope/spec", json={"text": GOOD}).status_code == 404
