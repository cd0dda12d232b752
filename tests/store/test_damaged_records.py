"""Issue 16, State: one damaged record never hides the others, and readers never damage what they read.

Every test runs `dagu` as a user does; the damage is what a crash, a full disk or a
hand edit leaves in a run folder.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.store.conftest import Env

WORKFLOW = """\
name: a
params: P=1
steps:
  - id: say
    command: echo hi
"""


def _runs(env: Env, *ids: str) -> Path:
    env.write("a.yaml", WORKFLOW)
    for run_id in ids:
        res = env.run("start", "a.yaml", "--run-id", run_id, "-q")
        assert res.returncode == 0, res.stderr
    return env.home / "runs" / "a"


def _clean(res) -> None:
    """No traceback, no internal error (exit 3)."""
    assert res.returncode != 3, res.stderr
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr, res.stderr


@pytest.mark.parametrize("field,value", [("seq", None), ("steps", [1, 2]), ("started_at", "x"),
                                         ("params", "A=1"), ("interrupted", "no")])
def test_a_wrong_typed_snapshot_field_is_reported_and_the_run_rebuilt(env: Env, field: str, value) -> None:
    runs = _runs(env, "r1", "r2")
    snapshot = runs / "r1" / "status.json"
    data = json.loads(snapshot.read_text())
    data[field] = value
    snapshot.write_text(json.dumps(data))

    history = env.run("history", "a")
    _clean(history)
    assert history.returncode == 0
    assert "r1" in history.stdout and "r2" in history.stdout
    assert f"{snapshot}:1: damaged status snapshot (field {field!r}" in history.stderr

    status = env.run("status", "a", "--run-id", "r1")
    _clean(status)
    assert status.returncode == 0 and "succeeded" in status.stdout
    assert f"{snapshot}:1:" in status.stderr
    assert env.status("a", "r1")["status"] == "succeeded"  # rebuilt from the journal


def test_a_wrong_typed_journal_line_is_skipped_with_its_line(env: Env) -> None:
    runs = _runs(env, "r1", "r2")
    journal = runs / "r2" / "journal.jsonl"
    lines = journal.read_text().splitlines(keepends=True)
    lines.insert(2, '{"ev":"step_finished","seq":"zz"}\n')
    journal.write_text("".join(lines))
    (runs / "r2" / "status.json").unlink()  # readers fold the whole journal

    status = env.run("status", "a")  # the latest run
    _clean(status)
    assert status.returncode == 0 and "succeeded" in status.stdout
    assert f"{journal}:3: damaged record (field 'seq': expected an integer, got 'zz'); skipped" in status.stderr
    history = env.run("history", "a", "--format", "json")
    _clean(history)
    rows = {r["run_id"]: r for r in json.loads(history.stdout)}
    assert rows["r1"]["status"] == rows["r2"]["status"] == "succeeded"


def test_a_snapshot_that_is_not_an_object_or_a_newer_format(env: Env) -> None:
    runs = _runs(env, "r1", "r2")
    (runs / "r1" / "status.json").write_text("[1, 2]\n")
    (runs / "r2" / "status.json").write_text('{"format": 99, "dag": "a", "run_id": "r2"}\n')
    res = env.run("history", "a")
    _clean(res)
    assert res.returncode == 0
    assert "not a JSON object but list" in res.stderr
    assert "this dagu reads format 1, got 99" in res.stderr


def _dead_run_with_torn_tail(runs: Path, run_id: str) -> tuple[Path, bytes]:
    """A run whose supervisor 'died' mid-write: no run_finished, a torn last line, a garbage snapshot."""
    run = runs / run_id
    journal = run / "journal.jsonl"
    kept = [line for line in journal.read_text().splitlines(keepends=True) if '"run_finished"' not in line]
    torn = b'{"ev":"step_fini'
    journal.write_bytes("".join(kept).encode() + torn)
    (run / "status.json").write_bytes(b"garbage{")
    return run, torn


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).digest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_reading_a_damaged_dead_run_writes_nothing(env: Env) -> None:
    runs = _runs(env, "r1", "r2")
    _dead_run_with_torn_tail(runs, "r2")
    before = _tree(env.home)
    for args in (["status", "a"], ["status", "a", "--run-id", "r2", "--format", "json"], ["history", "a"],
                 ["history", "a", "--format", "json"], ["logs", "a", "--run-id", "r2"]):
        res = env.run(*args)
        _clean(res)
        assert res.returncode == 0, (args, res.stderr)
    assert _tree(env.home) == before  # byte for byte, and no file added
    assert "journal.jsonl:4: the last record is incomplete" in env.run("status", "a").stderr


def test_the_next_writer_moves_past_a_torn_tail_and_keeps_the_damaged_snapshot(env: Env) -> None:
    runs = _runs(env, "r1", "r2")
    run, torn = _dead_run_with_torn_tail(runs, "r2")

    res = env.run("retry", "a", "--run-id", "r2")  # records the interruption, then runs again
    _clean(res)
    assert res.returncode == 0, res.stderr
    lines = (run / "journal.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]  # every line is a whole record
    assert [e["ev"] for e in events][-3:] == ["interrupted", "run_started", "run_finished"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert (run / "journal.jsonl.torn").read_bytes() == torn + b"\n"
    assert (run / "status.json.damaged").read_bytes() == b"garbage{"
    status = env.run("status", "a", "--run-id", "r2")
    assert status.returncode == 0 and "succeeded" in status.stdout
    assert "warning" not in status.stderr, status.stderr  # the run folder is whole again


def test_a_newline_in_a_param_does_not_break_the_history_table(env: Env) -> None:
    _runs(env)
    res = env.run("start", "a.yaml", "--run-id", "nl", "-q", "--", "P=one\ntwo")
    assert res.returncode == 0, res.stderr
    history = env.run("history", "a")
    assert history.returncode == 0
    assert history.stdout.count("\n") == 2, history.stdout  # the header and one row
    assert "P=one\\ntwo" in history.stdout
