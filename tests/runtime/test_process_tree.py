"""Nothing a step starts outlives it (issue 16, Processes): leftovers of a step that ended, a step
that ignores SIGTERM, a supervisor killed with SIGKILL, CPU limits of the whole tree, and NUL
bytes that a process environment cannot carry.  Real `dagu` processes throughout; the pids the
steps write are ours to check and, if a test fails, to kill."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from dagu.process.spawn import SpawnError, check_spawnable
from tests.runtime.conftest import Env


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _pids(env: Env, *names: str) -> list[int]:
    return [int((env.dir / name).read_text().split()[0]) for name in names]


def _gone(pids: list[int], timeout: float = 10) -> bool:
    """Whether every pid has ended; survivors are killed so a failing test leaves nothing behind."""
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = [p for p in pids if _alive(p)]
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    return not survivors


@pytest.fixture(params=["auto", "session"])
def tree_env(request: pytest.FixtureRequest, env: Env) -> Env:
    """Each test twice: with the host's best tracking (a cgroup here) and with the fallback."""
    if request.param == "session":
        env.env["DAGU_PROCESS_TREE"] = "session"
    return env


def test_a_step_ignoring_sigterm_does_not_survive_its_timeout(tree_env: Env) -> None:
    env = tree_env
    env.write("stubborn.yaml", """
        max_clean_up_time_sec: 1
        steps:
          - id: stubborn
            command: sh -c 'trap "" TERM; sleep 300 & echo $! > bg.pid; echo $$ > sh.pid; sleep 300'
            timeout_sec: 1
        """)
    res = env.run("start", "stubborn.yaml")
    assert res.returncode == 1
    assert _gone(_pids(env, "bg.pid", "sh.pid"), timeout=0.5)
    st = env.status("stubborn")
    assert "timed out after 1 s" in st["steps"]["stubborn"]["attempts"][0]["error"]


def test_background_and_setsid_children_do_not_outlive_a_step_that_succeeded(tree_env: Env) -> None:
    env = tree_env
    env.write("bg.yaml", """
        steps:
          - id: bg
            command: sh -c 'sleep 300 & echo $! > bg.pid; exec sleep 0.3'
          - id: daemon
            command: sh -c 'setsid sh -c "echo \\$\\$ > daemon.pid; exec sleep 300" & sleep 0.5'
        """)
    res = env.run("start", "bg.yaml")
    assert res.returncode == 0, res.stderr
    assert _gone(_pids(env, "bg.pid", "daemon.pid"), timeout=0.5)
    st = env.status("bg")
    for step in ("bg", "daemon"):
        assert st["steps"][step]["status"] == "succeeded"
        assert st["steps"][step]["reason"].startswith("1 leftover process was still running when the step ended")


def test_stop_leaves_nothing_of_a_step_ignoring_sigterm(env: Env) -> None:
    env.write("stop.yaml", """
        max_clean_up_time_sec: 1
        steps:
          - id: stubborn
            command: sh -c 'trap "" TERM; setsid sleep 300 & echo $! > bg.pid; echo $$ > sh.pid; touch up; sleep 300'
        """)
    proc = env.popen("start", "stop.yaml", "--run-id", "s1")
    env.wait_for("up")
    assert env.run("stop", "stop.yaml").returncode == 0
    proc.wait(timeout=30)
    assert _gone(_pids(env, "bg.pid", "sh.pid"), timeout=0.5)
    assert env.status("stop", "s1")["status"] == "aborted"


_CRASHING = """
    max_active_runs: 1
    steps:
      - id: long
        command: |
          if [ -f second ]; then exit 0; fi
          sh -c 'trap "" TERM; echo $$ > bg.pid; sleep 300' &
          sleep 0.2; touch started; sleep 300
    """


def _watchdog_of(supervisor: int) -> int:
    """The supervisor's watchdog: its child in its own session (step leaders have sessions of their own)."""
    import psutil

    session = os.getsid(supervisor)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for child in psutil.Process(supervisor).children():
            if os.getsid(child.pid) == session:
                return child.pid
        time.sleep(0.05)
    raise AssertionError("the supervisor has no watchdog")


def test_a_killed_supervisors_whole_step_tree_dies_with_it(tree_env: Env) -> None:
    """kill -9 of the supervisor: its watchdog kills every step tree at once, the TERM-ignoring
    background process included, not only the step's leader."""
    env = tree_env
    env.write("crash.yaml", _CRASHING)
    proc = env.popen("start", "crash.yaml", "--run-id", "dead")
    env.wait_for("started")
    watchdog = _watchdog_of(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    leftover = _pids(env, "bg.pid")
    assert _gone(leftover, timeout=5)
    assert _gone([watchdog], timeout=5)  # it left once its work was done
    res = env.run("status", "crash.yaml", "--run-id", "dead")
    assert "none of its step processes is still running" in res.stderr


def test_a_killed_supervisors_steps_are_reaped_before_the_next_run_takes_the_slot(tree_env: Env) -> None:
    """kill -9 of the supervisor and its watchdog together: what the step started lives on in the
    run's cgroup (or session) until the next start of the DAG kills it, before it runs."""
    env = tree_env
    env.write("crash.yaml", _CRASHING)
    proc = env.popen("start", "crash.yaml", "--run-id", "dead")
    env.wait_for("started")
    watchdog = _watchdog_of(proc.pid)
    os.kill(watchdog, signal.SIGKILL)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    leftover = _pids(env, "bg.pid")
    time.sleep(0.3)
    assert _alive(leftover[0])  # nobody was left to kill what the step started...
    res = env.run("status", "crash.yaml", "--run-id", "dead")
    assert "of its step processes are still running" in res.stderr and str(leftover[0]) in res.stderr
    (env.dir / "second").touch()
    res = env.run("start", "crash.yaml", "--run-id", "next")
    assert res.returncode == 0, res.stderr
    assert _gone(leftover, timeout=0.5)  # ...until the next start killed it, before it ran
    res = env.run("status", "crash.yaml", "--run-id", "dead")
    assert "none of its step processes is still running" in res.stderr


def test_cpu_sec_limits_the_whole_tree(tree_env: Env) -> None:
    env = tree_env
    env.write("cpu.yaml", """
        steps:
          - id: busy
            command: sh -c 'for i in 1 2 3; do (while :; do :; done) & done; sleep 20; kill 0'
            limits:
              cpu_sec: 1
        """)
    res = env.run("start", "cpu.yaml")
    assert res.returncode == 1
    attempt = env.status("cpu")["steps"]["busy"]["attempts"][0]
    assert "CPU time limit of 1 s exceeded" in attempt["error"] and "limits.cpu_sec" in attempt["error"]


def test_a_nul_in_an_output_fails_the_consuming_step_naming_the_variable(env: Env) -> None:
    env.write("nul.yaml", """
        steps:
          - id: produce
            command: printf 'a\\000b'
            output: OUT
          - id: consume
            command: echo "$OUT"
            depends: [produce]
        """)
    res = env.run("start", "nul.yaml")
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    st = env.status("nul")
    assert st["status"] == "failed" and not st["interrupted"]
    assert st["steps"]["produce"]["status"] == "succeeded"
    assert st["steps"]["consume"]["status"] == "failed"
    assert "environment variable OUT contains a NUL byte" in st["steps"]["consume"]["attempts"][0]["error"]


def test_a_nul_in_a_command_word_is_refused_before_the_fork_naming_the_word() -> None:
    with pytest.raises(SpawnError, match="argument 1 of the command"):
        check_spawnable(["echo", "a\0b"], {"PATH": "/bin"})
    with pytest.raises(SpawnError, match="environment variable OUT contains a NUL byte"):
        check_spawnable(["echo", "a\0b"], {"OUT": "a\0b"})
    check_spawnable(["echo", "ab"], {"OUT": "ab"})


def test_a_dismissed_watchdog_leaves_by_itself_and_a_later_process_gets_a_new_one() -> None:
    """Watchdog.dismiss (the run's last attempt is reaped): the watchdog exits without killing
    anything and without being waited for; a process started after all the same is watched by a
    new watchdog; close reaps whichever is left."""
    from dagu.process.watchdog import Watchdog

    import subprocess

    from dagu.process.procfs import read_stat
    from dagu.process.watchdog import kill_leaders

    watchdog = Watchdog(lambda leaders: kill_leaders(leaders, lambda pid: getattr(read_stat(pid), "start", None)))
    watchdog.ensure()
    first = watchdog.pid
    assert first is not None and _alive(first)
    step = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        watchdog.leader(step.pid, read_stat(step.pid).start)
        watchdog.dismiss()
        deadline = time.monotonic() + 5
        while _alive(first) and time.monotonic() < deadline:  # a zombie now: it ended on its own
            time.sleep(0.01)
        assert not _alive(first)
        assert step.poll() is None, "a dismissed watchdog kills nothing"
    finally:
        step.kill()
        step.wait()
    watchdog.ensure()
    second = watchdog.pid
    assert second is not None and second != first and _alive(second)
    with pytest.raises(ChildProcessError):
        os.waitpid(first, os.WNOHANG)  # the dismissed one was reaped when the new one came
    watchdog.close()
    assert watchdog.pid is None and not _alive(second)
