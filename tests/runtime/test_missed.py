"""Missed scheduled ticks become a run with status `missed` that runs the failure handlers."""

from __future__ import annotations

import json

from tests.runtime.conftest import Env


def test_a_missed_run_records_why_runs_no_step_and_notifies_through_the_failure_handler(env: Env) -> None:
    env.write("nightly.yaml", """
        schedule: "0 2 * * *"
        max_active_runs: 1
        handler_on:
          failure:
            command: echo "failure ${DAG_RUN_STATUS}" >> trace.txt
          exit:
            command: echo "exit ${DAG_RUN_STATUS}" >> trace.txt
        steps:
          - id: work
            command: echo work >> trace.txt
        """)
    why = "missed 3 scheduled tick(s) 2026-11-20T02:00:00Z .. 2026-11-22T02:00:00Z: the scheduler was not running"
    res = env.run("start", "-q", "nightly.yaml", "--run-id", "nightly-20261120T020000Z", "--missed", why)
    assert res.returncode == 1
    assert (env.dir / "trace.txt").read_text().splitlines() == ["failure missed", "exit missed"]
    st = env.status("nightly", "nightly-20261120T020000Z")
    assert st["status"] == "missed" and st["error"] == why
    assert st["steps"]["work"]["status"] == "not_started"
    rows = json.loads(env.run("history", "nightly", "--format", "json").stdout)
    assert [(r["run_id"], r["status"]) for r in rows] == [("nightly-20261120T020000Z", "missed")]
    # a missed record takes no max_active_runs slot: an ordinary run still starts after it
    assert env.run("start", "nightly.yaml", "--run-id", "n2").returncode == 0
