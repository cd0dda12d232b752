"""Step types the build cannot run fail the run before any step has a side effect, and a call
step without its call is a step failure, never a crash (issue 14)."""

from __future__ import annotations

import json

from dagu.executors import catalog
from tests.runtime.conftest import Env

TWO_STEPS = """
    steps:
      - id: first
        command: touch side-effect.txt
      - id: second
        command: echo second
    """


def _plan(env: Env, yaml: str) -> dict:
    env.write("flow.yaml", yaml)
    res = env.run("compile", "flow.yaml", "-o", "flow.plan.json")
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads((env.dir / "flow.plan.json").read_text())


def _write(env: Env, plan: dict) -> None:
    (env.dir / "flow.plan.json").write_text(json.dumps(plan))


def test_a_type_without_an_executor_fails_the_run_before_any_step(env: Env) -> None:
    # a plan compiled elsewhere (or by an older build) may name a type this build cannot run
    plan = _plan(env, TWO_STEPS)
    plan["dags"]["flow"]["steps"][1]["type"] = "archive"
    _write(env, plan)
    res = env.run("start", "flow.plan.json", "--run-id", "r1")
    assert res.returncode == 1
    assert not (env.dir / "side-effect.txt").exists()
    st = env.status("flow", "r1")
    assert st["status"] == "failed"
    assert "flow.yaml:5:5: step 'second' has type 'archive'" in st["error"]
    assert f"it runs: {', '.join(catalog.runnable_names())})" in st["error"]
    assert {s["status"] for s in st["steps"].values()} == {"not_started"}
    assert "Traceback" not in res.stderr


def test_a_call_step_without_call_fails_cleanly_and_retry_does_not_crash(env: Env) -> None:
    plan = _plan(env, TWO_STEPS)
    plan["dags"]["flow"]["steps"][1]["type"] = "call"
    _write(env, plan)
    res = env.run("start", "flow.plan.json", "--run-id", "r1")
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr and "AssertionError" not in res.stderr
    st = env.status("flow", "r1")
    assert st["status"] == "failed"
    assert st["steps"]["first"]["status"] == "succeeded"
    second = st["steps"]["second"]
    assert second["status"] == "failed"
    assert "flow.yaml:5:5: step type 'call' needs `call:`" in json.dumps(second)
    again = env.run("retry", "flow", "--run-id", "r1")
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert env.status("flow", "r1")["steps"]["second"]["status"] == "failed"


def test_a_noop_step_with_an_approval_waits_like_a_command_step(env: Env) -> None:
    plan = _plan(env, """
        type: graph
        steps:
          - id: gate
            command: "true"
            approval:
              prompt: Go?
          - id: after
            depends: gate
            command: echo after > after.txt
        """)
    step = plan["dags"]["flow"]["steps"][0]
    step["type"], step["command"] = "noop", []  # how the compiler spells `type: approval`
    _write(env, plan)
    res = env.run("start", "flow.plan.json", "--run-id", "r1")
    assert res.returncode == 0, res.stderr
    st = env.status("flow", "r1")
    assert st["status"] == "waiting" and st["steps"]["gate"]["status"] == "waiting"
    assert not (env.dir / "after.txt").exists()
    res = env.run("approve", "r1", "gate", "--wait")
    assert res.returncode == 0, res.stderr
    assert env.status("flow", "r1")["status"] == "succeeded"
    assert (env.dir / "after.txt").read_text() == "after\n"
