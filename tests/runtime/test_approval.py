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
    res = env.run("approve", "g1", "gate", "-i", "TICKET=OPS-7", "-i", "REASON=tested")
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
    res = env.run("reject", "g2", "gate", "--reason", "not today")
    assert res.returncode == 1
    assert _trace(env)[3:] == ["failure", "exit failed"]
    st = env.status("gated", "g2")
    assert st["status"] == "failed"
    assert st["steps"]["gate"]["status"] == "failed" and "not today" in st["steps"]["gate"]["reason"]
    assert st["steps"]["ship"]["status"] == "not_started"
    events = [json.loads(line)["ev"] for line in
              (env.home / "runs" / "gated" / "g2" / "journal.jsonl").read_text().splitlines()]
    assert "rejected" in events and events[-1] == "run_finished"
