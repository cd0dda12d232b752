"""Semantics the conformance suite does not cover, end to end through `dagu start`."""

from __future__ import annotations

from tests.runtime.conftest import Env


def _trace(env: Env) -> list[str]:
    path = env.dir / "trace.txt"
    return path.read_text().splitlines() if path.exists() else []


def test_parallel_items_from_an_output_with_object_fields(env: Env) -> None:
    env.write("fan.yaml", """
        steps:
          - id: list
            command: |
              echo '[{"name": "a", "size": 1}, {"name": "b", "size": 2}]'
            output: ITEMS
          - id: each
            call: worker
            parallel:
              items: ${ITEMS}
              max_concurrent: 1
            params: "NAME=${ITEM.name} SIZE=${ITEM.size}"
            output: RESULTS
          - id: after
            command: echo "done ${RESULTS.summary.succeeded}" >> trace.txt
        ---
        name: worker
        params:
          - NAME: none
          - SIZE: 0
        steps:
          - id: work
            command: echo "${NAME}=${SIZE}" >> trace.txt
        """)
    res = env.run("start", "fan.yaml")
    assert res.returncode == 0, res.stderr
    assert _trace(env) == ["a=1", "b=2", "done 2"]


def test_call_steps_take_preconditions_and_retries(env: Env) -> None:
    env.write("callretry.yaml", """
        type: graph
        steps:
          - id: skipped_call
            call: child
            preconditions:
              - condition: "test -f nope.flag"
          - id: flaky_call
            call: child
            retry_policy:
              limit: 2
              interval_sec: 0
        ---
        name: child
        steps:
          - id: once
            command: |
              echo try >> trace.txt
              if [ -f second.flag ]; then exit 0; fi
              touch second.flag; exit 1
        """)
    res = env.run("start", "callretry.yaml", "--run-id", "cr")
    assert res.returncode == 0, res.stderr
    assert _trace(env) == ["try", "try"]
    st = env.status("callretry", "cr")
    assert st["steps"]["skipped_call"]["status"] == "skipped"
    assert len(st["steps"]["flaky_call"]["attempts"]) == 2
    assert [r["status"] for r in st["sub_runs"]] == ["succeeded"]  # the latest attempt's run


def test_rich_params_are_checked_before_anything_runs(env: Env) -> None:
    env.write("rich.yaml", """
        params:
          - name: COUNT
            type: integer
            default: 3
          - name: ENV
            enum: [dev, prod]
            required: true
        steps:
          - id: show
            command: echo "${ENV} ${COUNT}" >> trace.txt
        """)
    missing = env.run("start", "rich.yaml")
    assert missing.returncode == 1 and "ENV" in missing.stderr
    wrong = env.run("start", "rich.yaml", "--", "ENV=qa")
    assert wrong.returncode == 1 and "dev" in wrong.stderr and "qa" in wrong.stderr
    bad_int = env.run("start", "rich.yaml", "--", "ENV=dev", "COUNT=many")
    assert bad_int.returncode == 1 and "integer" in bad_int.stderr
    assert _trace(env) == []
    assert env.run("start", "rich.yaml", "--", "ENV=prod").returncode == 0
    assert _trace(env) == ["prod 3"]


def test_outputs_are_scoped_to_ancestors_and_restored_on_retry(env: Env) -> None:
    env.write("scoped.yaml", """
        type: graph
        steps:
          - id: left
            command: echo L
            output: V
          - id: right
            command: echo R
            output: V
          - id: use_left
            depends: left
            command: |
              echo "left sees ${V} ${left.output}" >> trace.txt
              test -f ok.flag
        """)
    assert env.run("start", "scoped.yaml", "--run-id", "s1").returncode == 1
    (env.dir / "ok.flag").touch()
    assert env.run("retry", "scoped.yaml", "--run-id", "s1").returncode == 0
    assert _trace(env) == ["left sees L L", "left sees L L"]
