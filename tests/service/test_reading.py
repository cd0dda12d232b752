"""Reading never writes: a dead supervisor's run is reported interrupted, recorded only by its owners."""

from __future__ import annotations

import json
import os
import signal

from dagu.service import reading
from tests.runtime.conftest import Env
from tests.service.helpers import WAIT_FOR_GO, events, wait

HOLD = f"""
    steps:
      - id: hold
        command: {WAIT_FOR_GO.format(go='go')}
    """


def _step_running(env: Env) -> bool:
    res = env.run("status", "hold", "--run-id", "k1", "--format", "json")
    return res.returncode == 0 and json.loads(res.stdout)["steps"].get("hold", {}).get("status") == "running"


def test_reading_a_run_whose_supervisor_was_killed_writes_nothing_and_reports_it_interrupted(env: Env) -> None:
    env.write("hold.yaml", HOLD)
    run_dir = env.home / "runs" / "hold" / "k1"
    supervisor = env.popen("start", "hold.yaml", "--run-id", "k1")
    try:
        wait(lambda: _step_running(env), "the step never started")
        step_pid = env.status("hold", "k1")["steps"]["hold"]["attempts"][-1]["pid"]
    finally:
        supervisor.kill()  # kill -9: nothing is recorded
        supervisor.wait()
    files = [run_dir / "journal.jsonl", run_dir / "status.json"]
    before = [f.read_bytes() for f in files]
    stamps = [f.stat().st_mtime_ns for f in files]
    try:
        st = env.status("hold", "k1")
        assert st["status"] == "failed" and st["interrupted"] is True and st["live"] is False
        text = env.run("status", "hold")
        assert text.returncode == 0 and "failed  (interrupted)" in text.stdout
        history = json.loads(env.run("history", "hold", "--format", "json").stdout)
        assert [(h["run_id"], h["status"], h["interrupted"]) for h in history] == [("k1", "failed", True)]
        assert "(interrupted)" in env.run("history", "hold").stdout
        assert env.run("logs", "hold").returncode == 0
        assert [f.read_bytes() for f in files] == before
        assert [f.stat().st_mtime_ns for f in files] == stamps
        assert "interrupted" not in [e["ev"] for e in events(run_dir)]
        # retry owns the run's liveness: it records the interruption, then continues the run
        (env.dir / "go").write_text("")
        res = env.run("retry", "hold", "--run-id", "k1")
        assert res.returncode == 0, res.stderr
        kinds = [e["ev"] for e in events(run_dir)]
        assert "interrupted" in kinds and kinds.index("interrupted") < len(kinds) - kinds[::-1].index("run_started")
        assert env.status("hold", "k1")["status"] == "succeeded"
    finally:
        try:
            os.killpg(step_pid, signal.SIGKILL)  # the step our killed supervisor left behind, if still there
        except ProcessLookupError:
            pass


def test_read_log_by_offset_and_tail(env: Env) -> None:
    env.write("talk.yaml", "steps:\n  - id: say\n    command: printf 'hello world'\n")
    assert env.run("start", "talk.yaml", "--run-id", "t1").returncode == 0
    home = str(env.home)
    first = reading.read_log(home, "talk", "t1", "say", offset=0, limit=5)
    assert first.data == b"hello" and first.next_offset == 5 and first.size == 11
    rest = reading.read_log(home, "talk", "t1", "say", offset=first.next_offset)
    assert rest.data == b" world" and rest.next_offset == 11
    assert reading.read_log(home, "talk", None, "say", offset=11).data == b""
    assert reading.tail(home, "talk", "t1", "say", limit=5).data == b"world"
    assert reading.read_log(home, "talk", "t1", "say", stream="stderr").data == b""


def test_status_report_has_the_sub_run_tree(env: Env) -> None:
    env.write("parent.yaml", """
        steps:
          - id: call_child
            call: child
        ---
        name: child
        steps:
          - id: c
            command: "true"
        """)
    assert env.run("start", "parent.yaml", "--run-id", "p1").returncode == 0
    report = reading.status(str(env.home), "parent", "p1")
    [sub] = report.sub_runs
    assert (sub.step, sub.dag, sub.status) == ("call_child", "child", "succeeded")
    assert report.to_dict()["sub_runs"][0]["dag"] == "child"
