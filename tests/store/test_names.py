"""Issue 16, Paths: run ids, DAG names, `exec --name` and `queue:` values are path components.

Each is checked by one function (spec/names.py) wherever a path is built, so no command
reads, writes or executes anything outside DAGU_HOME whatever name it is given, and says
why with exit 1 or 2, never a traceback.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dagu.spec.names import BadName, check_dag_name, check_queue_name, check_run_id
from tests.store.conftest import Env

HOSTILE = ["../../../x/fake", "..", "../x", "/tmp/dagu-evil-abs", "..%2F..%2Fx", "%2e%2e%2fx", ".hidden", "a/b",
           "-rf"]


def _outside(env: Env) -> set[str]:
    """Every path under the test's folder except DAGU_HOME's content: what must not change."""
    root = env.home.parent
    return {str(p.relative_to(root)) for p in root.rglob("*") if env.home not in p.parents} | \
        {p for p in os.listdir("/tmp") if p.startswith("dagu-evil")}


def _clear(res, *codes: int) -> None:
    assert res.returncode in codes, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr, res.stderr


@pytest.mark.parametrize("value", ["a\0b", "..", "../x", "/abs", ".h", "a..b", "x" * 200, "", "a b"])
def test_one_function_per_kind_refuses_what_cannot_be_a_path_component(value: str) -> None:
    for check in (check_dag_name, check_queue_name, check_run_id):
        with pytest.raises(BadName) as caught:
            check(value)
        assert repr(value) in str(caught.value) and "use at most" in str(caught.value)
    assert check_dag_name("etl-daily_2.v1") == "etl-daily_2.v1"
    assert check_run_id("20261124T101500Z-1a2b3c4d") == "20261124T101500Z-1a2b3c4d"
    assert check_run_id("parent.step.1.0") == "parent.step.1.0"  # a sub-DAG run's id


def _workflow(env: Env) -> None:
    env.write("a.yaml", """\
        name: a
        steps:
          - id: s
            command: echo hi
        """)
    res = env.run("start", "a.yaml", "--run-id", "r1", "-q")
    assert res.returncode == 0, res.stderr


def _plant_outside_run(env: Env) -> Path:
    """A folder outside DAGU_HOME that looks like a run with a plan that would write a marker."""
    fake = env.home.parent / "x" / "fake"
    fake.mkdir(parents=True)
    plan = json.loads((env.home / "runs" / "a" / "r1" / "plan.json").read_text())
    (fake / "plan.json").write_text(json.dumps(plan).replace("echo hi", f"touch {env.home.parent}/PWNED"))
    (fake / "journal.jsonl").write_text('{"ev":"run_started","at":1,"seq":1}\n')
    return fake


@pytest.mark.parametrize("run_id", HOSTILE)
def test_every_command_that_takes_a_run_id_refuses_a_hostile_one(env: Env, run_id: str) -> None:
    _workflow(env)
    _plant_outside_run(env)
    before = _outside(env)
    for args in (["status", "a.yaml", "--run-id", run_id], ["logs", "a.yaml", "--run-id", run_id],
                 ["retry", "a.yaml", "--run-id", run_id], ["stop", "a.yaml", "--run-id", run_id],
                 ["dequeue", "a.yaml", "--run-id", run_id], ["approve", run_id, "s"], ["reject", run_id, "s"],
                 ["push-back", run_id, "s"], ["start", "a.yaml", "-q", "--run-id", run_id],
                 ["enqueue", "a.yaml", "--run-id", run_id], ["exec", "--run-id", run_id, "-q", "--", "true"],
                 ["start-queued", f"a/{run_id}"], ["resume", f"a/{run_id}"]):
        res = env.run(*[a for a in args if a is not None])
        _clear(res, 1, 2)
        assert "not allowed" in res.stderr or "usage:" in res.stderr, (args, res.stderr)
    assert _outside(env) == before
    assert not (env.home.parent / "PWNED").exists()


@pytest.mark.parametrize("name", HOSTILE)
def test_every_command_that_takes_a_dag_name_refuses_a_hostile_one(env: Env, name: str) -> None:
    _workflow(env)
    before = _outside(env)
    for args in (["status", name], ["history", name], ["logs", name], ["retry", name, "--run-id", "r1"],
                 ["stop", name], ["dequeue", name, "--run-id", "r1"], ["cleanup", name, "--retention-runs", "1"],
                 ["approve", "r1", "s", "--dag", name], ["exec", "--name", name, "-q", "--", "true"]):
        res = env.run(*args)
        _clear(res, 1, 2)
    assert _outside(env) == before


def test_a_symlinked_run_or_dag_folder_pointing_outside_is_refused(env: Env) -> None:
    _workflow(env)
    fake = _plant_outside_run(env)
    os.symlink(fake, env.home / "runs" / "a" / "evil")
    os.symlink(fake.parent, env.home / "runs" / "b")
    before = _outside(env)
    for args in (["status", "a.yaml", "--run-id", "evil"], ["logs", "a.yaml", "--run-id", "evil"],
                 ["retry", "a.yaml", "--run-id", "evil"], ["approve", "evil", "s", "--dag", "a"],
                 ["status", "b"], ["history", "b"]):
        res = env.run(*args)
        _clear(res, 2)
        assert "outside" in res.stderr and "refused" in res.stderr, (args, res.stderr)
    history = env.run("history", "a", "--format", "json")  # the symlink is not listed as a run
    _clear(history, 0)
    assert [r["run_id"] for r in json.loads(history.stdout)] == ["r1"]
    assert _outside(env) == before and sorted(os.listdir(fake)) == ["journal.jsonl", "plan.json"]
    assert not (env.home.parent / "PWNED").exists()


@pytest.mark.parametrize("queue", ["../../../evilq", "..", "/tmp/dagu-evil-q", "a\\u0000b"])
def test_a_hostile_queue_is_refused_at_its_line_and_by_a_plan_file(env: Env, queue: str) -> None:
    env.write("q.yaml", f"""\
        name: q
        queue: "{queue}"
        steps:
          - command: echo hi
        """)
    before = _outside(env)
    res = env.run("enqueue", "q.yaml")
    _clear(res, 1)
    assert "q.yaml:2:8: error: invalid queue name" in res.stderr and "[invalid-queue-name]" in res.stderr
    # a plan file skips the compiler: the store refuses the queue before writing anything
    env.write("ok.yaml", "name: q\nsteps:\n  - command: echo hi\n")
    plan_path = env.dir / "q.plan.json"
    assert env.run("compile", "ok.yaml", "-o", str(plan_path)).returncode == 0
    plan = json.loads(plan_path.read_text())
    plan["dags"]["q"]["queue"] = queue.replace("\\u0000", "\0")
    plan_path.write_text(json.dumps(plan))
    before = _outside(env)
    res = env.run("enqueue", str(plan_path))
    _clear(res, 1, 2)
    assert "queue name" in res.stderr and "not allowed" in res.stderr
    assert _outside(env) == before
    assert not (env.home / "runs" / "q").exists() or not os.listdir(env.home / "runs" / "q")


def test_a_hostile_dag_name_is_refused_at_its_line(env: Env) -> None:
    env.write("d.yaml", 'name: "../../../evil"\nsteps:\n  - command: echo hi\n')
    res = env.run("start", "d.yaml")
    _clear(res, 1)
    assert "d.yaml:1:7: error: invalid DAG name" in res.stderr
    assert _outside(env) == {"home", "work", "work/d.yaml"}
