"""Stopping one run by id, and approval decisions that resume the run in its own process."""

from __future__ import annotations

import os
import signal

from tests.runtime.conftest import Env
from tests.service.helpers import WAIT_FOR_GO, events, wait

TWO_AT_ONCE = f"""
    max_active_runs: 2
    steps:
      - id: hold
        command: {WAIT_FOR_GO.format(go='go')}
    """


def _running(env: Env, dag: str, run_id: str) -> bool:
    res = env.run("status", dag, "--run-id", run_id, "--format", "json")
    if res.returncode != 0:
        return False
    import json

    st = json.loads(res.stdout)
    # before its first event a live run lists no steps yet
    return st["live"] and st["steps"].get("hold", {}).get("status") == "running"


def test_stop_by_run_id_stops_that_run_and_leaves_the_other_running(env: Env) -> None:
    env.write("two.yaml", TWO_AT_ONCE)
    first, second = env.popen("start", "two.yaml", "--run-id", "r1"), env.popen("start", "two.yaml", "--run-id", "r2")
    try:
        wait(lambda: _running(env, "two", "r1") and _running(env, "two", "r2"), "both runs never ran")
        res = env.run("stop", "two.yaml", "--run-id", "r1")
        assert res.returncode == 0, res.stderr
        assert "stopped run r1" in res.stderr and "r2" not in res.stderr
        assert env.status("two", "r1")["status"] == "aborted"
        assert first.wait(timeout=30) == 1
        st = env.status("two", "r2")
        assert st["status"] == "running" and st["live"] is True and second.poll() is None
        not_running = env.run("stop", "two.yaml", "--run-id", "r1")
        assert not_running.returncode == 1 and "not running" in not_running.stderr
    finally:
        (env.dir / "go").write_text("")
        for proc in (first, second):
            proc.wait(timeout=30)
    assert env.status("two", "r2")["status"] == "succeeded"


GATED = f"""
    type: graph
    steps:
      - id: gate
        command: "true"
        approval:
          prompt: go on?
      - id: after
        depends: gate
        command: echo after >> trace.txt; {WAIT_FOR_GO.format(go='go')}
    """


def test_approve_returns_while_the_run_resumes_in_its_own_supervisor_process(env: Env) -> None:
    env.write("gated.yaml", GATED)
    assert env.run("start", "gated.yaml", "--run-id", "g1").returncode == 0
    approver = env.popen("approve", "g1", "gate")
    out, err = approver.communicate(timeout=60)
    try:
        assert approver.returncode == 0, err
        assert "continues in its own process" in err
        # the approver has exited; the run goes on without it
        wait(lambda: (env.dir / "trace.txt").exists(), "the resumed run never reached 'after'")
        st = env.status("gated", "g1")
        assert st["status"] == "running" and st["live"] is True
    finally:
        (env.dir / "go").write_text("")
    wait(lambda: env.status("gated", "g1")["status"] == "succeeded", "the resumed run did not finish")
    started = [e for e in events(env.home / "runs" / "gated" / "g1") if e["ev"] == "run_started"]
    assert len(started) == 2 and started[-1]["resume"] is True
    resumer = started[-1]["pid"]
    assert resumer not in (approver.pid, started[0]["pid"], os.getpid())


def test_approve_wait_reports_the_resumed_run(env: Env) -> None:
    env.write("gated.yaml", GATED)
    (env.dir / "go").write_text("")
    assert env.run("start", "gated.yaml", "--run-id", "g2").returncode == 0
    res = env.run("approve", "g2", "gate", "--wait")
    assert res.returncode == 0, res.stderr
    assert "run g2 of 'gated' succeeded" in res.stderr
    assert env.status("gated", "g2")["status"] == "succeeded"


def test_reject_without_wait_records_and_the_run_fails_in_its_own_process(env: Env) -> None:
    env.write("gated.yaml", GATED)
    assert env.run("start", "gated.yaml", "--run-id", "g3").returncode == 0
    res = env.run("reject", "g3", "gate", "--reason", "no")
    assert res.returncode == 0, res.stderr
    wait(lambda: env.status("gated", "g3")["status"] == "failed", "the rejected run did not fail")
    assert not (env.dir / "trace.txt").exists()


def test_the_stop_signal_goes_to_the_supervisor_recorded_in_the_run(env: Env) -> None:
    env.write("two.yaml", TWO_AT_ONCE)
    proc = env.popen("start", "two.yaml", "--run-id", "s1")
    try:
        wait(lambda: _running(env, "two", "s1"), "the run never ran")
        assert env.status("two", "s1")["pid"] == proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert env.status("two", "s1")["status"] == "aborted"
