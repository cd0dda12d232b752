"""Approval: a step runs, then the run waits on disk until someone approves or rejects it."""

from __future__ import annotations

import json

from tests.runtime.conftest import Env

GATED = """
    type: graph
    handler_on:
      wait:
        command: echo "wait ${DAG_RUN_STATUS}" >> trace.txt
      failure:
        command: echo failure >> trace.txt
      exit:
        command: echo "exit ${DAG_RUN_STATUS}" >> trace.txt
    steps:
      - id: build
        command: echo build >> trace.txt
      - id: gate
        depends: build
        command: echo gate >> trace.txt
        approval:
          prompt: Ship it?
          input: [REASON, TICKET]
          required: [TICKET]
      - id: ship
        depends: gate
        command: echo "ship ${TICKET} ${REASON}" >> trace.txt
    """


def _trace(env: Env) -> list[str]:
    return (env.dir / "trace.txt").read_text().splitlines()


def test_approve_with_inputs_continues_the_run(env: Env) -> None:
    env.write("gated.yaml", GATED)
    res = env.run("start", "gated.yaml", "--run-id", "g1")
    assert res.returncode == 0, res.stderr
    assert "dagu approve g1" in res.stderr
    assert _trace(env) == ["build", "gate", "wait waiting"]
    st = env.status("gated", "g1")
    assert st["status"] == "waiting" and st["steps"]["gate"]["status"] == "waiting"
    assert st["steps"]["ship"]["status"] == "not_started"
    # a later process, as after a reboot: the wait is on disk
    missing = env.run("approve", "g1", "gate", "-i", "REASON=ok")
    assert missing.returncode == 1 and "TICKET" in missing.stderr
    unknown = env.run("approve", "g1", "gate", "-i", "TICKET=1", "-i", "OTHER=x")
    assert unknown.returncode == 1 and "OTHER" in unknown.stderr
    res = env.run("approve", "g1", "gate", "-i", "TICKET=OPS-7", "-i", "REASON=tested", "--wait")
    assert res.returncode == 0, res.stderr
    assert _trace(env)[3:] == ["ship OPS-7 tested", "exit succeeded"]
    st = env.status("gated", "g1")
    assert st["status"] == "succeeded"
    assert st["steps"]["gate"]["approval"]["inputs"] == {"TICKET": "OPS-7", "REASON": "tested"}
    assert len(st["steps"]["build"]["attempts"]) == 1  # not run again
    again = env.run("approve", "g1", "gate", "-i", "TICKET=x")
    assert again.returncode == 1 and "not waiting" in again.stderr


def test_reject_fails_the_run_and_runs_the_failure_handlers(env: Env) -> None:
    env.write("gated.yaml", GATED)
    assert env.run("start", "gated.yaml", "--run-id", "g2").returncode == 0
    res = env.run("reject", "g2", "gate", "--reason", "not today", "--wait")
    assert res.returncode == 1
    assert _trace(env)[3:] == ["failure", "exit failed"]
    st = env.status("gated", "g2")
    assert st["status"] == "failed"
    assert st["steps"]["gate"]["status"] == "failed" and "not today" in st["steps"]["gate"]["reason"]
    assert st["steps"]["ship"]["status"] == "not_started"
    events = [json.loads(line)["ev"] for line in
              (env.home / "runs" / "gated" / "g2" / "journal.jsonl").read_text().splitlines()]
    assert "rejected" in events and events[-1] == "run_finished"


REVIEWED = """
    type: graph
    steps:
      - id: draft
        command: echo "draft ${DAG_PUSHBACK_ITERATION:-0} ${FEEDBACK:-none}" | tee -a trace.txt
      - id: lint
        depends: draft
        command: echo lint >> trace.txt
      - id: review
        depends: lint
        command: echo review >> trace.txt
        approval:
          rewind_to: draft
      - id: publish
        depends: review
        command: echo publish >> trace.txt
    """


def test_push_back_runs_the_rewind_target_and_what_follows_again_with_the_feedback(env: Env) -> None:
    env.write("reviewed.yaml", REVIEWED)
    assert env.run("start", "reviewed.yaml", "--run-id", "r1").returncode == 0
    assert _trace(env) == ["draft 0 none", "lint", "review"]
    res = env.run("push-back", "r1", "review", "-i", "FEEDBACK=shorter", "--wait")
    assert res.returncode == 0, res.stderr
    assert _trace(env)[3:] == ["draft 1 shorter", "lint", "review"]  # and waits again
    st = env.status("reviewed", "r1")
    assert st["status"] == "waiting" and st["steps"]["review"]["status"] == "waiting"
    assert [len(st["steps"][s]["attempts"]) for s in ("draft", "lint", "review")] == [2, 2, 2]
    assert st["pushback"]["iteration"] == 1 and st["pushback"]["reset"] == ["draft", "lint", "review", "publish"]
    # the rewound step sees the whole history and its previous stdout
    res = env.run("push-back", "r1", "review", "-i", "FEEDBACK=even shorter", "--wait")
    assert res.returncode == 0, res.stderr
    st = env.status("reviewed", "r1")
    history = st["pushback"]["history"]
    assert [(h["iteration"], h["inputs"]["FEEDBACK"]) for h in history] == [(1, "shorter"), (2, "even shorter")]
    previous = st["steps"]["draft"]["attempts"][1]["stdout"]
    assert open(previous).read() == "draft 1 shorter\n"
    res = env.run("approve", "r1", "review", "--wait")
    assert res.returncode == 0, res.stderr
    assert _trace(env)[-2:] == ["review", "publish"]
    assert env.status("reviewed", "r1")["status"] == "succeeded"


def test_push_back_without_rewind_to_runs_the_approval_step_again(env: Env) -> None:
    env.write("gated.yaml", GATED)
    assert env.run("start", "gated.yaml", "--run-id", "g3").returncode == 0
    res = env.run("push-back", "g3", "gate", "-i", "bad-name=x")
    assert res.returncode == 1 and "bad-name" in res.stderr
    res = env.run("push-back", "g3", "gate", "--reason", "again", "--wait")
    assert res.returncode == 0, res.stderr
    assert _trace(env)[3:] == ["gate", "wait waiting"]  # build is not run again
    st = env.status("gated", "g3")
    assert len(st["steps"]["build"]["attempts"]) == 1 and len(st["steps"]["gate"]["attempts"]) == 2


def test_rewind_to_must_name_the_step_or_one_it_depends_on(env: Env) -> None:
    env.write("bad.yaml", """
        type: graph
        steps:
          - id: a
            command: "true"
          - id: b
            command: "true"
          - id: gate
            depends: a
            command: "true"
            approval:
              rewind_to: b
          - id: gate2
            depends: a
            command: "true"
            approval:
              rewind_to: nope
        """)
    res = env.run("compile", "bad.yaml")
    assert res.returncode == 1
    assert "bad.yaml:12:18: error: approval of step 'gate' rewinds to 'b', which does not run before it" in res.stdout + res.stderr
    assert "bad.yaml:17:18: error: approval of step 'gate2' rewinds to 'nope', which is not a step" in res.stdout + res.stderr
