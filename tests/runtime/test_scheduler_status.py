"""The scheduler's state made visible: heartbeat, `dagu status --scheduler`, missed ticks in history."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagu.schedule.state import Progress, TickJournal
from dagu.schedule.scheduler import LeaderLock, write_heartbeat
from dagu.schedule.status import compile_warning, render_text, scheduler_report
from dagu.store.runs import Store
from dagu.schedule.tick_history import tick_rows
from tests.runtime.conftest import Env
from tests.runtime.test_scheduler import DAILY, World, utc

EVERY_10 = 'schedule: "CRON_TZ=UTC */10 * * * *"\nsteps:\n  - id: a\n    command: "true"\n'
BROKEN = "schedule: '* * * * *'\nsteps:\n  - id: a\n    depends: nope\n    command: 'true'\n"


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path, utc(2026, 3, 27, 12))


def beat(world: World) -> dict:
    s = world.sched
    write_heartbeat(s.root, world.clock.now(), s.next_due, s.files, s.progress)
    return json.loads((world.home / "scheduler" / "heartbeat.json").read_text())


def test_the_heartbeat_names_next_ticks_with_their_zone_and_the_files_that_do_not_compile(world: World) -> None:
    good = world.write("good.yaml", DAILY)
    later = world.write("later.yaml", EVERY_10, mtime=1)
    mixed = world.write("mixed.yaml", """
        schedule:
          start: "CRON_TZ=UTC 0 0 * * *"
          stop: "CRON_TZ=America/New_York 0 13 * * *"
        steps:
          - id: a
            command: "true"
        """)
    never = world.write("never.yaml", BROKEN)
    world.at(2026, 3, 27, 12)
    world.write("later.yaml", BROKEN, mtime=2)  # breaks after it compiled: keeps its last good plan
    world.at(2026, 3, 27, 12, 0, 30)
    hb = beat(world)
    assert hb["pid"] == os.getpid() and hb["at"] == utc(2026, 3, 27, 12, 0, 30) and hb["interval_sec"] == 10
    assert hb["dags"]["good"] == {"file": str(good), "next_tick": utc(2026, 3, 28, 1, 30),
                                  "next_tick_utc": "2026-03-28T01:30:00Z", "tz": "Europe/Berlin",
                                  "handled_until": utc(2026, 3, 27, 12)}  # nothing was due since
    assert hb["dags"]["mixed"]["next_tick"] == utc(2026, 3, 27, 17)  # the stop, 13:00 in New York
    assert hb["dags"]["mixed"]["tz"] == "America/New_York" and hb["dags"]["mixed"]["file"] == str(mixed)
    assert hb["dags"]["later"]["next_tick"] == utc(2026, 3, 27, 12, 10)  # still scheduled
    [kept, skipped] = hb["broken"]
    assert (kept["file"], kept["dag"], kept["keeps_last_good_plan"]) == (str(later), "later", True)
    assert (skipped["file"], skipped["dag"], skipped["keeps_last_good_plan"]) == (str(never), None, False)
    assert re.match(rf"{re.escape(str(never))}:4:\d+: error: ", skipped["error"])

    home = str(world.home)
    warning = compile_warning(home, str(later), "later")
    assert warning.startswith(f"the scheduler is running the last good plan of 'later': {later} does not "
                              f"compile: {later}:4:")
    assert compile_warning(home, "later", "later") == warning  # by DAG name
    assert compile_warning(home, str(never), "never").startswith(f"the scheduler does not schedule {never}")
    assert compile_warning(home, str(good), "good") is None


def test_alive_stalled_and_dead_come_from_the_lock_and_the_heartbeat_age(world: World) -> None:
    home = str(world.home)
    report = scheduler_report(home, utc(2026, 3, 27, 12))
    assert (report.state(), report.healthy) == ("not running", False)
    assert "no heartbeat was ever written" in render_text(report)
    assert not (world.home / "scheduler").exists()  # asking creates nothing

    world.write("d.yaml", EVERY_10)
    world.at(2026, 3, 27, 12, 0, 5)
    beat(world)
    lock = LeaderLock(str(world.home / "scheduler" / "leader.lock"))
    assert lock.try_acquire()  # held on another open file: what a live scheduler looks like
    try:
        alive = scheduler_report(home, utc(2026, 3, 27, 12, 0, 30))
        assert (alive.state(), alive.healthy, alive.overdue) == ("alive", True, [])
        text = render_text(alive)
        assert text.startswith(f"scheduler: alive, pid {os.getpid()} on ")
        assert "last loop 25s ago (2026-03-27T12:00:05Z)" in text
        assert re.search(r"\nd +2026-03-27 12:10:00 \+00:00 UTC +2026-03-27T12:10:00Z +2026-03-27T12:00:05Z\n", text)
        stalled = scheduler_report(home, utc(2026, 3, 27, 12, 0, 36))  # 31 s > 3 beats of 10 s
        assert (stalled.state(), stalled.healthy) == ("alive but stalled", False)
        assert "its last loop 31s ago" in render_text(stalled)
        os.ftruncate(lock.fd, 0)
        os.pwrite(lock.fd, b"4242\n", 0)  # a standby took over and has not beaten yet: not stalled
        taken = scheduler_report(home, utc(2026, 3, 27, 12, 0, 36))
        assert (taken.state(), taken.healthy) == ("alive", True)
        assert render_text(taken).startswith("scheduler: alive (pid 4242 holds ")
        # a holder that never completes its first loop (blocked while loading its DAGs) is stalled too
        took = utc(2026, 3, 27, 12, 0, 36)
        os.utime(lock.path, (took, took))
        blocked = scheduler_report(home, utc(2026, 3, 27, 12, 1, 7))
        assert (blocked.state(), blocked.healthy) == ("alive but stalled", False)
        assert "pid 4242 took " in render_text(blocked) and "has not completed a loop" in render_text(blocked)
    finally:
        lock.release()
    dead = scheduler_report(home, utc(2026, 3, 27, 13, 0, 30))
    assert (dead.state(), dead.to_dict()["heartbeat_age_sec"]) == ("not running", 3625.0)
    assert [(o.dag, o.kind, o.count, o.first) for o in dead.overdue] == [("d", "start", 5, utc(2026, 3, 27, 12, 10))]
    assert "  d: 5 tick(s) missed since 2026-03-27T12:10:00Z, no scheduler is running" in render_text(dead)
    assert scheduler_report(home, utc(2026, 3, 27, 13, 1, 1)).overdue[0].count == 6  # 13:00 now 60 s late
    (world.dags / "d.yaml").unlink()  # a DAG whose file is gone is not overdue
    assert scheduler_report(home, utc(2026, 3, 27, 13, 1, 1)).overdue == []


def test_overdue_counting_stops_at_a_thousand(world: World) -> None:
    world.write("m.yaml", 'schedule: "CRON_TZ=UTC * * * * *"\nsteps:\n  - id: a\n    command: "true"\n')
    world.at(2026, 3, 27, 12)
    beat(world)
    [o] = scheduler_report(str(world.home), utc(2026, 3, 29, 12)).overdue
    assert (o.count, o.capped) == (1000, True)
    assert o.text().startswith("1000+ tick(s) missed since 2026-03-27T12:01:00Z")


def test_missed_and_failed_ticks_become_history_rows_unless_their_run_exists(world: World) -> None:
    home = str(world.home)
    journal = TickJournal(str(world.home / "scheduler"))
    Store(home).create("d", "d-20260327T100000Z", "{}")
    journal.add({"dag": "d", "kind": "start", "action": "missed", "tick": utc(2026, 3, 27, 8), "count": 3,
                 "last_tick": utc(2026, 3, 27, 8, 20), "reason": "no catchup_window"})
    journal.add({"dag": "d", "kind": "start", "action": "failed", "tick": utc(2026, 3, 27, 9),
                 "run_id": "d-20260327T090000Z", "reason": "OSError: no room"})
    journal.add({"dag": "d", "kind": "start", "action": "missed", "tick": utc(2026, 3, 27, 10),
                 "run_id": "d-20260327T100000Z", "reason": "recorded as a run"})
    journal.add({"dag": "d", "kind": "start", "action": "started", "tick": utc(2026, 3, 27, 11),
                 "run_id": "d-20260327T110000Z"})
    journal.add({"dag": "other", "kind": "start", "action": "missed", "tick": utc(2026, 3, 27, 8), "count": 1})
    journal.flush()
    rows = tick_rows(home, "d", utc(2026, 3, 27, 12))
    assert [(r.status, r.tick, r.run_id) for r in rows] == [
        ("missed", utc(2026, 3, 27, 8), None), ("launch-failed", utc(2026, 3, 27, 9), "d-20260327T090000Z")]
    assert rows[0].note() == "3 start ticks 2026-03-27T08:00:00Z .. 2026-03-27T08:20:00Z: no catchup_window"
    assert rows[1].to_dict()["started_at"] == utc(2026, 3, 27, 9)


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_dagu_status_scheduler_history_and_a_broken_file_end_to_end(env: Env) -> None:
    res = env.run("status", "--scheduler")
    assert res.returncode == 1 and res.stdout.startswith("scheduler: not running")
    assert env.run("status").returncode == 2
    dags = env.home / "dags"
    dags.mkdir()
    good = dags / "good.yaml"
    good.write_text(EVERY_10)
    assert env.run("start", "-q", str(good), "--run-id", "by-hand").returncode == 0
    heartbeat = env.home / "scheduler" / "heartbeat.json"
    with open(env.dir / "scheduler.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "dagu", "scheduler"], env=env.env, stdout=log,
                                stderr=log, cwd=env.dir)
    try:
        _wait(heartbeat.exists, 15, "no heartbeat")
        res = env.run("status", "--scheduler")
        assert res.returncode == 0 and res.stdout.startswith(f"scheduler: alive, pid {proc.pid} on "), res.stdout
        data = json.loads(env.run("status", "--scheduler", "--format", "json").stdout)
        assert (data["state"], [d["dag"] for d in data["dags"]]) == ("alive", ["good"])

        good.write_text(EVERY_10 + "    depends: nope\n")  # breaks: the scheduler keeps its last good plan
        _wait(lambda: json.loads(heartbeat.read_text()).get("broken"), 10, "the broken file was not reported")
        res = env.run("status", str(good))
        assert res.returncode == 0
        first = res.stderr.splitlines()[0]
        assert first.startswith(f"dagu status: warning: the scheduler is running the last good plan of 'good': "
                                f"{good} does not compile: {good}:5:"), first
        text = env.run("status", "--scheduler").stdout
        assert f"  {good}: keeping its last good plan (good)\n    {good}:5:" in text
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0

    progress = Progress(str(env.home / "scheduler"))
    progress.set("good", time.time() - 3600)  # as if it stopped an hour ago
    res = env.run("status", "--scheduler")
    assert res.returncode == 1 and res.stdout.startswith("scheduler: not running (no process holds")
    assert re.search(r"\n  good: [56] tick\(s\) missed since \S+, no scheduler is running\n", res.stdout)
    ticks = TickJournal(str(env.home / "scheduler"))
    ticks.add({"dag": "good", "kind": "start", "action": "failed", "tick": time.time() - 7200,
               "run_id": "good-x", "reason": "OSError: no room"})
    ticks.flush()
    hist = json.loads(env.run("history", str(good), "--format", "json").stdout)
    assert [(h["status"], h.get("reason")) for h in hist] == [
        ("succeeded", None), ("missed", "no scheduler is running"), ("launch-failed", "OSError: no room")]
    lines = env.run("history", "good").stdout.splitlines()
    assert lines[2].split()[:2] == ["-", "missed"] and "no scheduler is running" in lines[2]
    assert lines[3].split()[:2] == ["good-x", "launch-failed"]
