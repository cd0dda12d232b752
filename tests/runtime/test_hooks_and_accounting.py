"""Run events reach subscribers in order, and a step's recorded cost matches what it did."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

from dagu.compiler.pipeline import compile_file
from dagu.engine import runner


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict] = []
        self.flushes = 0

    def event(self, event: dict) -> None:
        self.events.append(dict(event))

    def flush(self) -> None:
        self.flushes += 1


def _plan(tmp_path: Path, text: str):
    path = tmp_path / "wf.yaml"
    path.write_text(textwrap.dedent(text))
    result = compile_file(str(path))
    assert result.ok, result.diagnostics
    return result.plan


def test_hooks_see_retries_and_handlers_in_order(tmp_path: Path) -> None:
    plan = _plan(tmp_path, """
        handler_on:
          failure:
            command: "true"
          exit:
            command: "true"
        steps:
          - id: flaky
            command: exit 7
            retry_policy:
              limit: 1
              interval_sec: 0
        """)
    recorder = Recorder()
    outcome = runner.start(plan, None, [], "h1", str(tmp_path / "home"), dict(os.environ), hooks=[recorder])
    assert outcome.status.status == "failed" and outcome.exit_code == 1
    seen = [(e["ev"], e.get("step"), e.get("attempt"), e.get("status")) for e in recorder.events]
    assert seen[0][0] == "run_started" and seen[-1] == ("run_finished", None, None, "failed")
    steps = [s for s in seen if s[0].startswith("step_")]
    assert steps == [("step_started", "flaky", 1, None), ("step_finished", "flaky", 1, "running"),
                     ("step_started", "flaky", 2, None), ("step_finished", "flaky", 2, "failed"),
                     ("step_started", "failure", 1, None), ("step_finished", "failure", 1, "succeeded"),
                     ("step_started", "exit", 1, None), ("step_finished", "exit", 1, "succeeded")]
    assert [e["seq"] for e in recorder.events] == sorted(e["seq"] for e in recorder.events)
    assert recorder.flushes >= 2


def test_peak_memory_of_a_300_mb_child_is_recorded_within_ten_percent(tmp_path: Path) -> None:
    plan = _plan(tmp_path, f"""
        steps:
          - id: hog
            command: >-
              {sys.executable} -c "b = bytearray(300 * 1024 * 1024); import time; time.sleep(0.5)"
        """)
    outcome = runner.start(plan, None, [], "m1", str(tmp_path / "home"), dict(os.environ))
    assert outcome.status.status == "succeeded"
    usage = outcome.status.steps["hog"].last.usage
    expected = 300 * 1024 * 1024
    assert abs(usage["peak_rss_bytes"] - expected) / expected < 0.10, usage
    assert usage["samples"] >= 2
    assert usage["user_sec"] + usage["sys_sec"] > 0
