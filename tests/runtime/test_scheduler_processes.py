"""The scheduler with real processes: runs it starts are ordinary runs; a standby takes over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dagu.schedule.clock import FakeClock
from dagu.service.control import stop_dag
from dagu.service.launching import local_launcher
from dagu.service.scheduling import scheduler_actions
from dagu.schedule.state import TickJournal
from dagu.schedule.scheduler import Scheduler
from dagu.store.state import RUN_FINAL
from dagu.store.runs import Store
from tests.runtime.test_scheduler import compile_for_scheduler, utc
from tests.runtime.conftest import Env


def test_a_due_tick_starts_an_ordinary_detached_run(env: Env) -> None:
    dags = env.dir / "dags"
    dags.mkdir()
    (dags / "tick.yaml").write_text(
        'schedule: "CRON_TZ=UTC * * * * *"\nsteps:\n  - id: a\n    command: echo hello\n')
    store = Store(str(env.home))
    launcher = scheduler_actions(str(env.home), env.env)
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


SLEEPER = """\
schedule:
  start: "CRON_TZ=UTC */5 * * * *"
  stop: "CRON_TZ=UTC 12 * * * *"
overlap_policy: skip
max_active_runs: 1
steps:
  - id: nap
    command: sleep 60
"""

# A scheduler process that handles two turns on a fake clock (the second starts a run), then
# lives on until it is killed: what a crashed scheduler leaves behind.
FIRST_SCHEDULER = """
import os, sys, time
from dagu.compiler.pipeline import compile_file
from dagu.compiler.render import render
from dagu.schedule.clock import FakeClock
from dagu.schedule.scheduler import Scheduler
from dagu.service.scheduling import scheduler_actions

def comp(path):
    r = compile_file(path)
    return (r.plan, None) if r.ok else (None, render("text", r.diagnostics, 1))

home, dags, t0, t1 = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
clock = FakeClock(t0)
sched = Scheduler(home, dags, comp, scheduler_actions(home, os.environ), clock)
sched.step()
clock.t = t1
sched.step()
print("stepped", flush=True)
time.sleep(600)
"""


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_restarted_scheduler_counts_and_stops_the_run_its_predecessor_started(env: Env) -> None:
    dags = env.dir / "dags"
    dags.mkdir()
    (dags / "sleeper.yaml").write_text(SLEEPER)
    store = Store(str(env.home))
    run_id = "sleeper-20260327T120500Z"
    first = subprocess.Popen([sys.executable, "-c", FIRST_SCHEDULER, str(env.home), str(dags),
                              str(utc(2026, 3, 27, 12, 0, 30)), str(utc(2026, 3, 27, 12, 5) + 0.2)],
                             env=env.env, stdout=subprocess.PIPE, text=True, cwd=env.dir)
    try:
        assert first.stdout.readline().strip() == "stepped"
        _wait(lambda: [r.run_id for r in store.active_runs("sleeper")] == [run_id], 20,
              "the first scheduler's run never took its slot")
        first.kill()  # the scheduler dies; the run it started lives on
        first.wait()
        assert [r.run_id for r in store.active_runs("sleeper")] == [run_id]

        clock = FakeClock(utc(2026, 3, 27, 12, 10) + 0.2)
        sched = Scheduler(str(env.home), str(dags), compile_for_scheduler,
                          scheduler_actions(str(env.home), env.env), clock)
        sched.step()  # the 12:10 start tick: the adopted run counts against max_active_runs 1
        ticks = [r for r in TickJournal(str(env.home / "scheduler")).read() if r.get("tick") == utc(2026, 3, 27, 12, 10)]
        assert [(t["kind"], t["action"]) for t in ticks] == [("start", "skipped")]
        assert f"overlap_policy skip: 1 active run(s) ({run_id})" in ticks[0]["reason"]
        assert not os.path.isdir(store.run("sleeper", "sleeper-20260327T121000Z").path)

        clock.t = utc(2026, 3, 27, 12, 12) + 0.2
        sched.step()  # the 12:12 stop tick stops the run the dead scheduler started
        [stop] = [r for r in TickJournal(str(env.home / "scheduler")).read() if r["kind"] == "stop"]
        assert stop["action"] == "stopped"
        _wait(lambda: store.run("sleeper", run_id).read().status.status in RUN_FINAL, 20,
              "the adopted run was not stopped")
        assert store.run("sleeper", run_id).read().status.status == "aborted"
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        stop_dag(str(env.home), local_launcher(str(env.home), env.env), "sleeper", wait_sec=10)


def test_a_run_whose_supervisor_died_while_no_scheduler_ran_is_marked_interrupted_at_start(env: Env) -> None:
    dags = env.home / "dags"
    dags.mkdir()
    (dags / "nap.yaml").write_text("steps:\n  - id: nap\n    command: sleep 60\n")
    run = Store(str(env.home)).run("nap", "r1")
    supervisor = env.popen("start", "-q", str(dags / "nap.yaml"), "--run-id", "r1")

    def raw() -> dict:  # the snapshot as on disk (as the supervisor left it)
        try:
            return json.loads(Path(run.status).read_text())
        except (OSError, ValueError):
            return {}

    def events() -> list[str]:
        return [json.loads(line)["ev"] for line in Path(run.journal).read_text().splitlines() if line.strip()]

    def step_pid() -> int | None:
        last = run.read().status.steps.get("nap")
        return last.last.pid if last is not None and last.last is not None else None

    pid = None
    scheduler = None
    try:
        _wait(lambda: step_pid() is not None, 20, "the step never started")
        pid = step_pid()
        supervisor.kill()  # kill -9 while no scheduler runs: nobody notices yet
        supervisor.wait()
        assert "interrupted" not in events() and not raw().get("interrupted")
        log = env.dir / "scheduler.log"
        with open(log, "w") as fh:
            scheduler = subprocess.Popen([sys.executable, "-m", "dagu", "scheduler"], env=env.env,
                                         stdout=fh, stderr=fh, cwd=env.dir)
        _wait_line(log, "active", 15)
        _wait(lambda: raw().get("interrupted") is True, 10, "the scheduler did not mark the run interrupted")
        assert raw()["status"] == "failed" and events()[-1] == "interrupted"
    finally:
        if scheduler is not None:
            scheduler.send_signal(signal.SIGTERM)
            scheduler.wait(timeout=10)
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
        if pid:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_the_scheduler_applies_the_history_size_cap_when_it_starts(env: Env) -> None:
    (env.home / "dags").mkdir()
    env.write("small.yaml", "steps:\n  - id: a\n    command: head -c 20000 /dev/zero\n")
    for n in range(3):
        assert env.run("start", "small.yaml", "--run-id", f"r{n}").returncode == 0
    from dagu.store.disk_usage import measure

    cap = measure(Store(str(env.home))).total - 1  # one byte too many: the oldest run goes
    log = env.dir / "sched.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "dagu", "scheduler"], stdout=fh, stderr=fh, cwd=env.dir,
                                env={**env.env, "DAGU_MAX_HISTORY_SIZE": str(cap)})
    try:
        _wait_line(log, "active", 15)
        _wait_line(env.home / "retention.log", '"size"', 15)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    removed = [json.loads(line)["run_id"] for line in (env.home / "retention.log").read_text().splitlines()]
    assert removed == ["r0"]  # oldest first, and only as much as the cap needs
    assert [r["run_id"] for r in json.loads(env.run("history", "small", "--format", "json").stdout)] == ["r2", "r1"]


def test_real_clock_a_one_minute_schedule_starts_a_run_on_the_minute(env: Env) -> None:
    """End to end with the real clock: `dagu scheduler` as a user starts it, a `* * * * *` DAG,
    and the run it starts at the next minute boundary (so this waits up to a minute)."""
    dags = env.home / "dags"
    dags.mkdir()
    (dags / "minutely.yaml").write_text('schedule: "* * * * *"\nsteps:\n  - id: a\n    command: date +%s\n')
    log = env.dir / "sched.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "dagu", "scheduler"], stdout=fh, stderr=fh,
                                cwd=env.dir, env=env.env)
    try:
        _wait_line(log, "active", 15)
        _wait_line(log, "start tick", 75)
        store = Store(str(env.home))
        deadline = time.monotonic() + 20
        while not [v for v in store.views("minutely") if v.status.status in RUN_FINAL]:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    [view] = store.views("minutely")
    assert view.status.status == "succeeded", (view.status, log.read_text())
    started = view.status.started_at
    assert started % 60 < 5, f"started {started % 60:.2f} s after the minute"
    assert view.status.run_id == "minutely-" + time.strftime("%Y%m%dT%H%M00Z", time.gmtime(started))
    status = env.run("status", "--scheduler", "--format", "json")
    assert status.returncode == 1  # stopped now: says so


def test_last_success_is_the_newest_succeeded_run_not_the_newest_run(env: Env) -> None:
    env.write("ok.yaml", "steps:\n  - id: a\n    command: \"true\"\n")
    env.write("bad.yaml", "name: ok\nsteps:\n  - id: a\n    command: \"false\"\n")
    launcher = scheduler_actions(str(env.home), env.env)
    assert launcher.last_success("ok") is None
    assert env.run("start", "ok.yaml", "--run-id", "s1").returncode == 0
    assert env.run("start", "ok.yaml", "--run-id", "s2").returncode == 0
    assert env.run("start", "bad.yaml", "--run-id", "f1").returncode == 1  # newer, failed
    assert launcher.last_success("ok") == env.status("ok", "s2")["started_at"]
