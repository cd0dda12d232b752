"""In-process executors in a real supervisor process: streamed logs, cancellation on timeout and
on SIGTERM, abandonment after the grace period, and `output:`.

The executor is test-only (tests/engine/inprocess_harness.py) and stands in for `noop` through
the supervisor's catalogue lookup; everything else (processes, journal, CLI reads) is real.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from dagu.store.runs import Store
from tests.runtime.conftest import Env

HARNESS = str(Path(__file__).with_name("inprocess_harness.py"))


def _plan(env: Env, yaml: str) -> str:
    env.write("flow.yaml", yaml)
    res = env.run("compile", "flow.yaml", "-o", "flow.plan.json")
    assert res.returncode == 0, res.stdout + res.stderr
    return str(env.dir / "flow.plan.json")


def _harness(env: Env, plan: str, behaviour: str, run_id: str = "r1") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, HARNESS, plan, "flow", run_id, behaviour], cwd=env.dir, env=env.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_text(path: Path, text: str, proc: subprocess.Popen, limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while not (path.exists() and text in path.read_text()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{text!r} never appeared in {path}"
        time.sleep(0.02)


def test_log_lines_appear_while_it_runs_and_sigterm_cancels_it(env: Env) -> None:
    plan = _plan(env, """
        steps:
          - id: talk
            type: noop
          - id: after
            command: echo after > after.txt
        """)
    proc = _harness(env, plan, "chatty")
    log = Path(Store(str(env.home)).run("flow", "r1").step_log("talk", 1, "out"))
    _wait_for_text(log, "line 3\n", proc)
    assert proc.poll() is None  # still running, and its lines are already on disk
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert out.strip() == "aborted", err
    assert (env.dir / "cancelled.txt").read_text() == "cancel callback ran\n"
    st = env.status("flow", "r1")
    assert st["steps"]["talk"]["status"] == "aborted"
    assert st["steps"]["after"]["status"] == "not_started"
    assert not (env.dir / "after.txt").exists()


def test_a_timeout_cancels_it(env: Env) -> None:
    plan = _plan(env, """
        steps:
          - id: talk
            type: noop
            timeout_sec: 1
        """)
    proc = _harness(env, plan, "chatty")
    out, err = proc.communicate(timeout=60)
    assert out.strip() == "failed", err
    assert (env.dir / "cancelled.txt").read_text() == "cancel callback ran\n"
    step = env.status("flow", "r1")["steps"]["talk"]
    assert step["status"] == "failed"
    assert "timed out after 1 s (timeout_sec); it was cancelled" in json.dumps(step)


def test_a_run_that_ignores_cancellation_is_concluded_after_the_grace_period(env: Env) -> None:
    plan = _plan(env, """
        max_clean_up_time_sec: 1
        steps:
          - id: deaf
            type: noop
            timeout_sec: 1
          - id: after
            command: echo after
        """)
    proc = _harness(env, plan, "stubborn")
    out, err = proc.communicate(timeout=60)  # the abandoned thread does not keep the process alive
    assert out.strip() == "failed", err
    step = env.status("flow", "r1")["steps"]["deaf"]
    assert step["status"] == "failed"
    assert "did not return within 1 s (max_clean_up_time_sec) of being cancelled" in json.dumps(step)
    assert "Traceback" not in err


def test_its_output_is_captured_and_addressable_by_field(env: Env) -> None:
    plan = _plan(env, """
        params: [WHO=world]
        steps:
          - id: ask
            type: noop
            output: ANSWER
          - id: use
            command: echo "${ask.output.field} ${ask.output.n}" > used.txt && printenv ANSWER >> used.txt
        """)
    proc = _harness(env, plan, "answer")
    out, err = proc.communicate(timeout=60)
    assert out.strip() == "succeeded", err
    assert (env.dir / "used.txt").read_text() == 'v 3\n{"field": "v", "n": 3}\n'
