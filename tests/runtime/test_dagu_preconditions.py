"""Preconditions and lifecycle handlers as upstream Dagu runs them (spec 023, issue 15), end to end."""

from __future__ import annotations

from tests.runtime.conftest import Env


def _trace(env: Env) -> list[str]:
    path = env.dir / "trace.txt"
    return path.read_text().splitlines() if path.exists() else []


def test_preconditions_are_checked_in_order_and_stop_at_the_first_unmet(env: Env) -> None:
    env.write("order.yaml", """
        steps:
          - id: gated
            preconditions:
              - condition: "echo first >> trace.txt; false"
              - condition: "echo second >> trace.txt"
            command: echo ran >> trace.txt
        """)
    res = env.run("start", "order.yaml", "--run-id", "o1")
    assert res.returncode == 0, res.stderr
    assert _trace(env) == ["first"]
    assert env.status("order", "o1")["steps"]["gated"]["status"] == "skipped"


def test_a_literal_expected_matches_any_one_line_of_the_value(env: Env) -> None:
    env.write("lines.yaml", """
        params:
          - LIST: ""
        steps:
          - id: gated
            preconditions:
              - condition: "${LIST}"
                expected: "beta"
            command: echo ran >> trace.txt
        """)
    res = env.run("start", "lines.yaml", "--", "LIST=alpha\nbeta\ngamma")
    assert res.returncode == 0, res.stderr
    assert _trace(env) == ["ran"]
    res = env.run("start", "lines.yaml", "--", "LIST=alpha\nbetamax")
    assert res.returncode == 0, res.stderr
    assert _trace(env) == ["ran"]  # a line must equal it, not contain it


def test_a_step_precondition_sees_its_own_env_and_working_directory(env: Env) -> None:
    (env.dir / "sub").mkdir()
    (env.dir / "sub" / "ready.flag").touch()
    env.write("ctx.yaml", """
        steps:
          - id: check
            working_dir: sub
            env:
              - READY_FILE: ready.flag
              - MODE: daily
            preconditions:
              - condition: test -f "$READY_FILE"
              - condition: "${MODE}"
                expected: daily
            command: echo ran >> ../trace.txt
        """)
    res = env.run("start", "ctx.yaml")
    assert res.returncode == 0, res.stderr
    assert _trace(env) == ["ran"]


def test_an_unmet_dag_precondition_aborts_the_run_and_runs_abort_then_exit(env: Env) -> None:
    env.write("gate.yaml", """
        params:
          - ENABLED: "false"
        preconditions:
          - condition: "${ENABLED}"
            expected: "true"
        handler_on:
          init:
            command: echo init >> trace.txt
          abort:
            command: echo "abort $DAG_RUN_STATUS" >> trace.txt
          failure:
            command: echo failure >> trace.txt
          exit:
            command: echo "exit $DAG_RUN_STATUS" >> trace.txt
        steps:
          - id: main
            command: echo main >> trace.txt
        """)
    env.run("start", "gate.yaml", "--run-id", "g1")
    assert _trace(env) == ["abort aborted", "exit aborted"]
    st = env.status("gate", "g1")
    assert st["status"] == "aborted"
    assert st["steps"]["main"]["status"] != "succeeded"


def test_a_step_skipped_by_its_precondition_skips_its_dependents_and_the_run_succeeds(env: Env) -> None:
    env.write("skip.yaml", """
        steps:
          - id: optional
            preconditions:
              - condition: "${FEATURE}"
                expected: "true"
            command: echo optional >> trace.txt
          - id: after
            depends: optional
            command: echo after >> trace.txt
          - id: other
            command: echo other >> trace.txt
        """)
    res = env.run("start", "skip.yaml", "--run-id", "k1")
    assert res.returncode == 0, res.stderr
    assert _trace(env) == ["other"]
    st = env.status("skip", "k1")
    assert st["status"] == "succeeded"
    assert st["steps"]["optional"]["status"] == "skipped"
    assert st["steps"]["after"]["status"] == "skipped"


def test_a_failing_init_handler_runs_no_step_and_aborts_the_run(env: Env) -> None:
    env.write("init.yaml", """
        handler_on:
          init:
            command: exit 3
          abort:
            command: echo "abort $DAG_RUN_STATUS" >> trace.txt
          exit:
            command: echo "exit $DAG_RUN_STATUS" >> trace.txt
        steps:
          - id: main
            command: echo main >> trace.txt
        """)
    res = env.run("start", "init.yaml", "--run-id", "i1")
    assert res.returncode != 0
    trace = _trace(env)
    assert "main" not in trace
    assert trace[-1] == "exit aborted"
    assert env.status("init", "i1")["status"] == "aborted"
