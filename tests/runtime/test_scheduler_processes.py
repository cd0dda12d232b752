"""The scheduler with real processes: runs it starts are ordinary runs; a standby takes over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dagu.runtime.clock import FakeClock
from dagu.runtime.launcher import ProcessLauncher
from dagu.runtime.scheduler import Scheduler
from dagu.runtime.store import Store
from dagu.runtime.supervisor import self_argv
from tests.runtime.test_scheduler import compile_for_scheduler, utc
from tests.runtime.conftest import Env


def test_a_due_tick_starts_an_ordinary_detached_run(env: Env) -> None:
    dags = env.dir / "dags"
    dags.mkdir()
    (dags / "tick.yaml").write_text(
        'schedule: "CRON_TZ=UTC * * * * *"\nsteps:\n  - id: a\n    command: echo hello\n')
    store = Store(str(env.home))
    launcher = ProcessLauncher(store, self_argv(), env.env)
    clock = FakeClock(utc(2026, 3, 27, 12, 0, 30))
    sched = Scheduler(str(env.home), str(dags), compile_for_scheduler, launcher, clock)
    assert sched.step() == utc(2026, 3, 27, 12, 1)
    clock.t = utc(2026, 3, 27, 12, 1) + 0.2
    sched.step()
    assert launcher.active("tick") == 1  # counted before its supervisor took a slot
    deadline = time.monotonic() + 20
    while launcher.active("tick") and time.monotonic() < deadline:
        time.sleep(0.05)
    st = env.status("tick", "tick-20260327T120100Z")
    assert st["status"] == "succeeded"
    assert env.run("logs", "tick", "--run-id", "tick-20260327T120100Z").stdout.endswith("\nhello\n")
    sched.step()  # the same tick again (say, after a crash before progress was written): not rerun
    assert [v.status.run_id for v in store.views("tick")] == ["tick-20260327T120100Z"]


def _wait_line(path: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in (path.read_text() if path.exists() else ""):
        assert time.monotonic() < deadline, f"{text!r} not in {path}:\n{path.read_text() if path.exists() else ''}"
        time.sleep(0.05)


def test_a_standby_scheduler_takes_over_when_the_leader_is_killed(env: Env) -> None:
    (env.home / "dags").mkdir()
    logs = [env.dir / "first.log", env.dir / "second.log"]
    procs = []
    for log in logs:
        with open(log, "w") as fh:
            procs.append(subprocess.Popen([sys.executable, "-m", "dagu", "scheduler"], env=env.env,
                                          stdout=fh, stderr=fh, cwd=env.dir))
        _wait_line(log, "active" if log == logs[0] else "standby", 15)
    first, second = procs
    try:
        assert (env.home / "scheduler" / "leader.lock").read_text().strip() == str(first.pid)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        killed = time.monotonic()
        _wait_line(logs[1], "active", 10)
        assert time.monotonic() - killed < 3
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=10) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
