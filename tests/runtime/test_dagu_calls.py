"""Sub-DAG calls and parallel items as upstream Dagu runs them (spec 018; issue 15), end to end."""

from __future__ import annotations

from tests.runtime.conftest import Env


def _trace(env: Env) -> list[str]:
    path = env.dir / "trace.txt"
    return path.read_text().splitlines() if path.exists() else []


def test_parallel_items_from_a_param_json_array_reach_the_child_as_its_first_positional(env: Env) -> None:
    env.write("fan.yaml", """
        params:
          - ITEMS: '["a b", "c"]'
        steps:
          - id: each
            call: worker
            parallel:
              items: ${ITEMS}
              max_concurrent: 1
        ---
        name: worker
        steps:
          - id: work
            command: echo "[$1]" >> trace.txt
        """)
    res = env.run("start", "fan.yaml")
    assert res.returncode == 0, res.stderr
    assert _trace(env) == ["[a b]", "[c]"]


def test_parallel_items_from_an_env_json_array(env: Env) -> None:
    env.write("fanenv.yaml", """
        env:
          - ITEMS: '["x", "y"]'
        steps:
          - id: each
            call: worker
            parallel:
              items: ${ITEMS}
              max_concurrent: 1
        ---
        name: worker
        steps:
          - id: work
            command: echo "$1" >> trace.txt
        """)
    res = env.run("start", "fanenv.yaml")
    assert res.returncode == 0, res.stderr
    assert _trace(env) == ["x", "y"]


def test_object_items_become_named_params_over_the_childs_defaults(env: Env) -> None:
    env.write("objs.yaml", """
        steps:
          - id: each
            call: worker
            parallel:
              items:
                - {REGION: eu, SIZE: 2}
                - {REGION: us}
              max_concurrent: 1
        ---
        name: worker
        params:
          - REGION: none
          - SIZE: 1
        steps:
          - id: work
            command: echo "${REGION} ${SIZE}" >> trace.txt
        """)
    res = env.run("start", "objs.yaml")
    assert res.returncode == 0, res.stderr
    assert _trace(env) == ["eu 2", "us 1"]


def test_a_child_aborted_by_its_precondition_fails_the_calling_step(env: Env) -> None:
    env.write("gated.yaml", """
        steps:
          - id: invoke
            call: child
          - id: after
            command: echo after >> trace.txt
        ---
        name: child
        preconditions:
          - condition: "test -f never.flag"
        steps:
          - id: work
            command: echo work >> trace.txt
        """)
    res = env.run("start", "gated.yaml", "--run-id", "p1")
    assert res.returncode == 1
    assert _trace(env) == []
    st = env.status("gated", "p1")
    assert st["status"] == "failed" and st["steps"]["invoke"]["status"] == "failed"


def test_retrying_a_call_step_retries_the_same_child_run(env: Env) -> None:
    env.write("again.yaml", """
        steps:
          - id: invoke
            call: child
            retry_policy:
              limit: 1
              interval_sec: 0
        ---
        name: child
        steps:
          - id: first
            command: echo first >> trace.txt
          - id: second
            command: |
              echo second >> trace.txt
              test -f second.flag || { touch second.flag; exit 1; }
        """)
    res = env.run("start", "again.yaml", "--run-id", "a1")
    assert res.returncode == 0, res.stderr
    assert _trace(env) == ["first", "second", "second"]
    st = env.status("again", "a1")
    assert len(st["steps"]["invoke"]["attempts"]) == 2
    runs = {r["run_id"] for r in st["sub_runs"]}
    assert len(runs) == 1


def test_dagu_retry_of_the_caller_retries_the_same_parallel_child_runs(env: Env) -> None:
    env.write("fanretry.yaml", """
        steps:
          - id: each
            call: worker
            parallel:
              items: [ok, flaky]
              max_concurrent: 1
        ---
        name: worker
        steps:
          - id: prep
            command: echo "prep $1" >> trace.txt
          - id: work
            command: |
              echo "work $1" >> trace.txt
              [ "$1" = ok ] || test -f fixed.flag
        """)
    assert env.run("start", "fanretry.yaml", "--run-id", "f1").returncode == 1
    assert _trace(env) == ["prep ok", "work ok", "prep flaky", "work flaky"]
    (env.dir / "fixed.flag").touch()
    res = env.run("retry", "fanretry.yaml", "--run-id", "f1")
    assert res.returncode == 0, res.stderr
    assert _trace(env)[4:] == ["work flaky"]


def test_repeat_until_an_output_condition_sees_the_newest_output(env: Env) -> None:
    env.write("until.yaml", """
        steps:
          - id: count
            command: |
              echo tick >> trace.txt
              wc -l < trace.txt | tr -d ' '
            output: COUNT
            repeat_policy:
              repeat: until
              condition: "${COUNT}"
              expected: "3"
              interval_sec: 0
              limit: 10
        """)
    res = env.run("start", "until.yaml")
    assert res.returncode == 0, res.stderr
    assert _trace(env) == ["tick", "tick", "tick"]
