"""Queued runs: recorded at once, started in order within max_active_runs, removable."""

from __future__ import annotations

import json

from tests.runtime.conftest import Env


def test_queue_runs_in_order_within_max_active_runs(env: Env) -> None:
    env.write("q.yaml", """
        max_active_runs: 2
        params:
          - N: 0
        steps:
          - id: work
            command: |
              echo "+${N}" >> trace.txt
              sleep 0.4
              echo "-${N}" >> trace.txt
        """)
    for n in range(1, 6):
        res = env.run("enqueue", "q.yaml", "--run-id", f"q{n}", "--", f"N={n}")
        assert res.returncode == 0, res.stderr
        assert res.stdout == f"q{n}\n"
    runs = json.loads(env.run("history", "q", "--format", "json").stdout)
    assert {r["status"] for r in runs} == {"queued"}  # recorded runs before they start
    listed = env.run("queue", "list").stdout.splitlines()
    assert [line.split("\t")[2] for line in listed] == ["q1", "q2", "q3", "q4", "q5"]
    assert env.run("dequeue", "q", "--run-id", "q4").returncode == 0
    assert env.run("dequeue", "q", "--run-id", "q4").returncode == 1  # gone already
    res = env.run("queue", "run", "--once", "--poll", "0.05", timeout=60)
    assert res.returncode == 0, res.stderr
    lines = (env.dir / "trace.txt").read_text().split()
    assert sorted(lines) == sorted(["+1", "-1", "+2", "-2", "+3", "-3", "+5", "-5"])
    peak = open_now = 0
    for line in lines:
        open_now += 1 if line.startswith("+") else -1
        peak = max(peak, open_now)
    assert peak == 2
    # dispatched in order: the first two start before the next two (which may race each other)
    assert max(lines.index("+1"), lines.index("+2")) < min(lines.index("+3"), lines.index("+5"))
    statuses = {r["run_id"]: r["status"] for r in json.loads(env.run("history", "q", "--format", "json").stdout)}
    assert statuses == {"q1": "succeeded", "q2": "succeeded", "q3": "succeeded", "q4": "aborted",
                        "q5": "succeeded"}
    assert env.run("queue", "list").stdout == ""


def test_a_queued_run_with_bad_params_is_refused_when_it_starts(env: Env) -> None:
    env.write("p.yaml", """
        params:
          - WHO: x
        steps:
          - id: hi
            command: echo hi
        """)
    assert env.run("enqueue", "p.yaml", "--run-id", "bad", "--", "WHOM=y").returncode == 0
    env.run("queue", "run", "--once", "--poll", "0.05", timeout=60)
    st = env.status("p", "bad")
    assert st["status"] == "failed" and "WHOM" in st["error"]
