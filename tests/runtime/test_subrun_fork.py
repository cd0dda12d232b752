"""Sub-DAG runs supervised in a fork of the caller (engine/subrun.py, process/fork.py), end to end.

A forked sub-run must be what a spawned `dagu start` of it was: the same statuses, outputs
and logs, a direct child of the caller that stops with it, and its steps die with it.  Which
of the two ran is seen from the called DAG's step: its parent is the sub-run's supervisor,
whose command line is the caller's own when forked and names `--dag child` when spawned.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.runtime.conftest import Env

CALLER = """
    type: graph
    steps:
      - id: one
        call: child
        params: "WHO=one"
        output: ONE
      - id: many
        call: child
        parallel:
          items: [{WHO: a}, {WHO: b}, {WHO: c}]
          max_concurrent: 2
    ---
    name: child
    params:
      - WHO: nobody
    steps:
      - id: say
        command: |
          tr '\\0' ' ' < /proc/$PPID/cmdline > "supervisor-${WHO}.txt"
          echo "hello ${WHO}"
        output: GREETING
    """


def _supervisors(env: Env) -> dict[str, str]:
    return {p.name[len("supervisor-"):-4]: p.read_text() for p in env.dir.glob("supervisor-*.txt")}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait(predicate, what: str, limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


@pytest.mark.parametrize("fork,tree", [("1", "auto"), ("0", "auto"), ("1", "session")])
def test_a_forked_sub_run_is_what_a_spawned_one_was(env: Env, fork: str, tree: str) -> None:
    if tree == "session":  # no cgroup to join: the fork has nothing to run before the sub-run
        env.env["DAGU_PROCESS_TREE"] = "session"
    env.write("caller.yaml", CALLER)
    res = env.run("start", "caller.yaml", "--run-id", "c1", env={"DAGU_SUBRUN_FORK": fork})
    assert res.returncode == 0, res.stderr
    st = env.status("caller", "c1")
    assert st["status"] == "succeeded"
    assert json.loads(st["outputs"]["ONE"])["outputs"] == {"GREETING": "hello one"}
    runs = {r["run_id"]: r for r in st["sub_runs"]}
    assert sorted(runs) == ["c1.many.0", "c1.many.1", "c1.many.2", "c1.one"]
    for run_id in runs:
        child = env.status("child", run_id)
        assert child["status"] == "succeeded" and child["parent"] == "caller/c1"
    assert env.status("child", "c1.many.1")["params"] == ["WHO=b"]
    supervisors = _supervisors(env)
    assert sorted(supervisors) == ["a", "b", "c", "one"]
    for cmdline in supervisors.values():  # forked: the caller's command line; spawned: its own
        assert ("--dag child" in cmdline) == (fork == "0"), cmdline
        assert "caller.yaml" in cmdline if fork == "1" else "--parent caller/c1" in cmdline
    logs = env.run("logs", "child", "--run-id", "c1.one", "--step", "say")
    assert logs.stdout == "hello one\n"


def test_a_failing_forked_sub_run_fails_its_step_with_its_exit_status(env: Env) -> None:
    env.write("bad.yaml", """
        steps:
          - id: invoke
            call: child
        ---
        name: child
        steps:
          - id: boom
            command: exit 3
        """)
    res = env.run("start", "bad.yaml", "--run-id", "b1")
    assert res.returncode == 1
    st = env.status("bad", "b1")
    assert st["steps"]["invoke"]["status"] == "failed"
    assert "sub-DAG 'child' ended failed" in json.dumps(st["steps"]["invoke"])
    assert env.status("child", "b1.invoke")["steps"]["boom"]["status"] == "failed"


def _start_sleeper(env: Env) -> tuple[subprocess.Popen, dict[str, int]]:
    """A caller whose sub-run's step leaves `sleep 300` behind (a second run of the step does
    nothing): the caller's process, and the pids of the sub-run's supervisor, step and sleep."""
    env.write("hold.yaml", """
        steps:
          - id: invoke
            call: child
        ---
        name: child
        steps:
          - id: nap
            command: |
              if [ -f sleep.pid ]; then exit 0; fi
              echo $PPID > supervisor.pid
              echo $$ > leader.pid
              sleep 300 &
              echo $! > sleep.tmp && mv sleep.tmp sleep.pid
              wait
        """)
    caller = env.popen("start", "hold.yaml", "--run-id", "h1")
    env.wait_for("sleep.pid")
    pids = {name: int((env.dir / f"{name}.pid").read_text()) for name in ("supervisor", "leader", "sleep")}
    with open(f"/proc/{pids['supervisor']}/stat") as fh:  # the sub-run's supervisor: the caller's child
        assert int(fh.read().rsplit(")", 1)[1].split()[1]) == caller.pid
    return caller, pids


def _end(caller: subprocess.Popen, pids: dict[str, int]) -> None:
    """Whatever a failed test left: the processes it started, by pid."""
    if caller.poll() is None:
        caller.kill()
        caller.wait()
    for pid in pids.values():
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_stopping_the_caller_stops_the_forked_sub_run_and_its_steps(env: Env) -> None:
    caller, pids = _start_sleeper(env)
    try:
        caller.send_signal(signal.SIGTERM)
        caller.communicate(timeout=60)
        assert not any(_alive(pid) for pid in pids.values())
    finally:
        _end(caller, pids)
    assert env.status("hold", "h1")["status"] == "aborted"
    child = env.status("child", "h1.invoke")
    assert child["status"] == "aborted" and child["steps"]["nap"]["status"] == "aborted"


@pytest.mark.parametrize("fork", ["1", "0"])
def test_killing_the_caller_leaves_nothing_once_it_is_retried(env: Env, fork: str) -> None:
    """SIGKILL: the watchdogs take the sub-run's supervisor and its step down; what
    the step left behind sits in cgroups nested under the caller's, so `dagu retry` of the
    caller kills it, as it did for a spawned sub-run."""
    env.env["DAGU_SUBRUN_FORK"] = fork
    caller, pids = _start_sleeper(env)
    try:
        caller.kill()
        caller.communicate(timeout=30)
        _wait(lambda: not _alive(pids["supervisor"]), "the sub-run's supervisor outlived its caller")
        _wait(lambda: not _alive(pids["leader"]), "the sub-run's step outlived its supervisor")
        res = env.run("retry", "hold", "--run-id", "h1", timeout=120)
        assert res.returncode == 0, res.stderr  # the caller's run lock did not stay with the fork
        assert not _alive(pids["sleep"])
    finally:
        _end(caller, pids)


def test_a_sub_run_is_spawned_while_an_in_process_executor_runs(env: Env) -> None:
    """Code of an in-process executor may hold any lock: no fork while it runs on the pool."""
    harness = str(Path(__file__).parents[1] / "engine" / "inprocess_harness.py")
    env.write("flow.yaml", CALLER.replace("  - id: one\n", "  - id: talk\n        type: noop\n      - id: one\n"))
    assert env.run("compile", "flow.yaml", "-o", "flow.plan.json").returncode == 0
    proc = subprocess.Popen([sys.executable, harness, str(env.dir / "flow.plan.json"), "flow", "r1", "chatty"],
                            cwd=env.dir, env=env.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait(lambda: len(_supervisors(env)) == 4 and all(_supervisors(env).values()),
              "the sub-runs never ran")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert out.strip() == "aborted", err
    for cmdline in _supervisors(env).values():
        assert "--dag child" in cmdline, cmdline
