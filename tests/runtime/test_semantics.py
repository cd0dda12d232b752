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


def test_router_num_routes_dependents_of_unchosen_targets_and_its_decision_log(env: Env) -> None:
    env.write("score.yaml", """
        type: graph
        params:
          - SCORE: "0.95"
          - LIMIT: "0.9"
        steps:
          - id: pick
            type: router
            value: ${SCORE}
            routes:
              "re:.*": [audit]
              "num:>=${LIMIT}": [auto]
              "num:<${LIMIT}": [human]
          - id: auto
            command: echo auto >> trace.txt
          - id: human
            command: echo human >> trace.txt
          - id: audit
            command: echo audit >> trace.txt
          - id: join
            depends: [auto, human]
            command: echo join >> trace.txt
        """)
    res = env.run("start", "score.yaml", "--run-id", "n1")
    assert res.returncode == 0, res.stderr
    assert sorted((env.dir / "trace.txt").read_text().split()) == ["audit", "auto", "join"]
    st = env.status("score", "n1")
    assert st["steps"]["human"]["status"] == "skipped" and st["status"] == "succeeded"
    log = env.run("logs", "score.yaml", "--run-id", "n1", "--step", "pick")
    assert log.stdout.splitlines() == ["Router evaluating: 0.95", "  num:>=0.9 -> [auto]",
                                       "  num:<0.9 -> [human]", "  re:.* -> [audit]"]
    (env.dir / "trace.txt").unlink()
    res = env.run("start", "score.yaml", "--run-id", "n2", "--", "SCORE=high")
    assert res.returncode == 1
    st = env.status("score", "n2")
    assert st["steps"]["pick"]["status"] == "failed" and "not a finite number" in st["steps"]["pick"]["reason"]
    assert not (env.dir / "trace.txt").exists()  # not even the catch-all runs


def test_router_patterns_are_checked_at_compile_time(env: Env) -> None:
    env.write("bad.yaml", """
        type: graph
        steps:
          - id: pick
            type: router
            value: x
            routes:
              "a": [t1]
              "re:.*": [t1]
              "num:=>1": [t2]
          - id: t1
            command: "true"
          - id: t2
            command: "true"
        """)
    res = env.run("compile", "bad.yaml")
    out = res.stdout + res.stderr
    assert res.returncode == 1
    assert "bad.yaml:9:17: error: step 't1' is targeted by multiple routes of router 'pick'" in out
    assert "bad.yaml:10:7: error: numeric comparison is invalid: 'num:=>1'" in out


def test_dry_decides_conditions_and_routes_known_before_the_run_and_runs_nothing(env: Env) -> None:
    env.write("walk.yaml", """
        type: graph
        params:
          - SPEED: fast
          - LIMIT: "3"
        env:
          - STAMP: "`touch ran.txt; echo x`"
        handler_on:
          exit:
            command: touch exit.txt
        steps:
          - id: route
            type: router
            value: ${SPEED}
            routes:
              fast: [fast_path]
              slow: [slow_path]
          - id: fast_path
            command: touch fast.txt
          - id: slow_path
            command: touch slow.txt
          - id: big
            preconditions:
              - condition: ${LIMIT}
                expected: "num:>5"
            command: touch big.txt
          - id: after_big
            depends: big
            command: "true"
          - id: stamped
            preconditions:
              - condition: ${STAMP}
                expected: x
            command: "true"
        """)
    res = env.run("dry", "walk.yaml")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "value 'fast' chooses fast_path" in out
    assert "-> skipped: router 'route' does not choose it" in out.split("slow_path", 2)[2]
    assert "-> skipped: precondition ${LIMIT} > 5 is false ('3')" in out
    assert "-> skipped: because step 'big' is skipped" in out
    assert "runs only if its preconditions hold (decided at run time)" in out.split("stamped")[1]
    assert list(env.dir.glob("*.txt")) == []  # no step, handler or backtick ran
    slow = env.run("dry", "walk.yaml", "--", "SPEED=slow", "LIMIT=9")
    assert "value 'slow' chooses slow_path" in slow.stdout and "skipped: precondition" not in slow.stdout
    typo = env.run("dry", "walk.yaml", "--", "SPED=slow")
    assert typo.returncode == 1 and "unknown param 'SPED'" in typo.stderr


def test_an_undeclared_named_param_is_refused_even_when_none_are_declared(env: Env) -> None:
    env.write("plain.yaml", """
        steps:
          - id: a
            command: touch ran.txt
        """)
    res = env.run("start", "plain.yaml", "--", "MODE=fast")
    assert res.returncode == 1 and "unknown param 'MODE'" in res.stderr and "declares no params" in res.stderr
    assert not (env.dir / "ran.txt").exists()
    assert env.run("start", "plain.yaml", "--", "positional").returncode == 0  # $1 is fine


def test_a_slow_precondition_does_not_hold_up_other_steps(env: Env) -> None:
    env.write("slowcheck.yaml", """
        type: graph
        steps:
          - id: gated
            preconditions:
              - condition: "sleep 4; test -f go.flag"
            command: echo gated >> trace.txt
          - id: quick
            command: echo quick >> trace.txt
          - id: after_quick
            depends: quick
            command: echo after_quick >> trace.txt
          - id: unmet
            preconditions:
              - condition: "`echo no`"
                expected: "yes"
            command: echo unmet >> trace.txt
        """)
    res = env.run("start", "slowcheck.yaml", "--run-id", "s1")
    assert res.returncode == 0, res.stderr
    assert (env.dir / "trace.txt").read_text().split() == ["quick", "after_quick"]
    st = env.status("slowcheck", "s1")
    assert st["steps"]["gated"]["status"] == "skipped" and "go.flag" in st["steps"]["gated"]["reason"]
    assert st["steps"]["unmet"]["status"] == "skipped"
    started = st["started_at"]
    # the chain finished while the 4 s precondition was still being checked
    assert st["steps"]["after_quick"]["attempts"][0]["finished_at"] - started < 3
    assert st["finished_at"] - started >= 4


def test_a_call_passing_a_param_the_called_dag_does_not_declare_is_a_compile_error(env: Env) -> None:
    env.write("caller.yaml", """
        steps:
          - id: invoke
            call: child
            params: "WHO=parent WHOM=typo"
        """)
    env.write("child.yaml", """
        params:
          - WHO: nobody
        steps:
          - id: greet
            command: echo "${WHO}"
        """)
    res = env.run("compile", "caller.yaml")
    assert res.returncode == 1
    assert "caller.yaml:5:13: error: step 'invoke' passes param 'WHOM', which DAG 'child' does not declare" in res.stdout
