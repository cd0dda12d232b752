"""Starting and retrying through the service: retry of one step, detached starts."""

from __future__ import annotations

import os

from dagu.service import runs
from dagu.service.dags import load_for_run
from dagu.service.launching import local_launcher
from tests.runtime.conftest import Env
from tests.service.helpers import events, wait

CHAIN = """
    steps:
      - id: a
        command: echo a >> trace.txt
      - id: b
        command: echo b >> trace.txt; test -f fixed
      - id: c
        command: echo c >> trace.txt
      - id: d
        command: echo d >> trace.txt
    """


def _trace(env: Env) -> list[str]:
    return (env.dir / "trace.txt").read_text().splitlines()


def test_retry_step_runs_only_that_step_and_keeps_every_other_result(env: Env) -> None:
    env.write("chain.yaml", CHAIN)
    assert env.run("start", "chain.yaml", "--run-id", "c1").returncode == 1
    assert _trace(env) == ["a", "b"]
    (env.dir / "fixed").write_text("")
    res = env.run("retry", "chain.yaml", "--run-id", "c1", "--step", "b")
    assert res.returncode == 0, res.stderr
    assert _trace(env) == ["a", "b", "b"]  # a is not run again, c and d are not run
    st = env.status("chain", "c1")
    assert st["steps"]["b"]["status"] == "succeeded" and len(st["steps"]["b"]["attempts"]) == 2
    assert len(st["steps"]["a"]["attempts"]) == 1
    assert st["steps"]["c"]["status"] == "not_started" and st["steps"]["c"]["attempts"] == []
    # a whole retry then runs what is left
    res = env.run("retry", "chain.yaml", "--run-id", "c1")
    assert res.returncode == 0, res.stderr
    assert _trace(env) == ["a", "b", "b", "c", "d"]


def test_retry_step_of_a_succeeded_step_runs_it_again_alone(env: Env) -> None:
    env.write("chain.yaml", CHAIN)
    (env.dir / "fixed").write_text("")
    assert env.run("start", "chain.yaml", "--run-id", "c2").returncode == 0
    res = env.run("retry", "chain.yaml", "--run-id", "c2", "--step", "c")
    assert res.returncode == 0, res.stderr
    assert _trace(env) == ["a", "b", "c", "d", "c"]
    bad = env.run("retry", "chain.yaml", "--run-id", "c2", "--step", "nope")
    assert bad.returncode == 1 and "no step 'nope'" in bad.stderr


def test_start_detached_records_the_run_before_returning_and_runs_it_in_another_process(env: Env) -> None:
    env.write("one.yaml", "steps:\n  - id: a\n    command: echo detached >> trace.txt\n")
    home = str(env.home)
    loaded = load_for_run(str(env.dir / "one.yaml"))
    detached = runs.start_detached(home, local_launcher(home, env.env), loaded.plan, [], run_id="d1")
    assert detached.process is not None and not detached.queued
    assert os.path.isdir(env.home / "runs" / "one" / "d1")  # visible at once, before its supervisor runs
    runs.wait_detached(detached)
    wait(lambda: env.status("one", "d1")["status"] == "succeeded", "the detached run did not succeed")
    [started] = [e for e in events(env.home / "runs" / "one" / "d1") if e["ev"] == "run_started"]
    assert started["pid"] != os.getpid()
    assert _trace(env) == ["detached"]
