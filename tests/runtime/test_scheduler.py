"""The scheduler's decisions with a fake clock and a fake launcher: milliseconds, no processes."""

from __future__ import annotations

import os
import textwrap
from datetime import datetime, timezone
from pathlib import Path

import pytest

from dagu.compiler.pipeline import compile_file
from dagu.compiler.render import render
from dagu.schedule.clock import FakeClock
from dagu.schedule.state import TickJournal
from dagu.schedule.scheduler import Scheduler


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


def compile_for_scheduler(path: str):
    result = compile_file(path)
    return (result.plan, None) if result.ok else (None, render("text", result.diagnostics, 1))


class FakeLauncher:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.running: dict[str, int] = {}
        self.runs: set[tuple[str, str]] = set()
        self.succeeded_at: dict[str, float] = {}
        self.runs_keep_running = False  # True: a started run stays active until stopped

    def exists(self, dag: str, run_id: str) -> bool:
        return (dag, run_id) in self.runs

    def active(self, dag: str) -> int:
        return self.running.get(dag, 0)

    def active_ids(self, dag: str) -> list[str]:
        return [f"{dag}-running-{i}" for i in range(self.running.get(dag, 0))]

    def last_success(self, dag: str) -> float | None:
        return self.succeeded_at.get(dag)

    def start(self, plan, plan_path: str, run_id: str) -> None:
        assert os.path.exists(plan_path)
        self.calls.append(("start", run_id))
        self.runs.add((plan.root, run_id))
        if self.runs_keep_running:
            self.running[plan.root] = self.running.get(plan.root, 0) + 1

    def stop(self, dag: str) -> None:
        self.calls.append(("stop", dag))
        self.running[dag] = 0

    def restart(self, plan, plan_path: str, run_id: str) -> None:
        self.calls.append(("restart", run_id))
        self.runs.add((plan.root, run_id))
        self.running[plan.root] = 1

    def enqueue(self, plan, run_id: str, replace: bool = False) -> None:
        self.calls.append(("enqueue-replace" if replace else "enqueue", run_id))
        self.runs.add((plan.root, run_id))

    def missed(self, plan, plan_path: str, run_id: str, why: str) -> None:
        self.calls.append(("missed", run_id, why))
        self.runs.add((plan.root, run_id))


class World:
    def __init__(self, tmp: Path, now: float) -> None:
        self.home = tmp / "home"
        self.dags = tmp / "dags"
        self.dags.mkdir()
        self.clock = FakeClock(now)
        self.launcher = FakeLauncher()
        self.lines: list[str] = []
        self.sched = self.new_scheduler()

    def new_scheduler(self) -> Scheduler:
        """A fresh scheduler object on the same data dir: what a restart sees."""
        return Scheduler(str(self.home), str(self.dags), compile_for_scheduler, self.launcher, self.clock,
                         self.lines.append)

    def write(self, name: str, text: str, mtime: float | None = None) -> Path:
        path = self.dags / name
        path.write_text(textwrap.dedent(text))
        if mtime is not None:
            os.utime(path, (mtime, mtime))
        return path

    def at(self, *when: int) -> float | None:
        self.clock.t = utc(*when)
        return self.sched.step()

    def started(self) -> list[str]:
        return [c[1] for c in self.launcher.calls if c[0] == "start"]

    def journal(self, action: str | None = None) -> list[dict]:
        return [r for r in TickJournal(str(self.home / "scheduler")).read() if action in (None, r["action"])]


DAILY = """
    schedule: "CRON_TZ=Europe/Berlin 30 2 * * *"
    steps:
      - id: a
        command: "true"
    """


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path, utc(2026, 3, 27, 12))


def test_a_berlin_0230_job_runs_once_per_day_across_both_dst_changes(world: World) -> None:
    world.write("d.yaml", DAILY)
    world.at(2026, 3, 27, 12)  # first sight: counts from now
    t = world.clock.t
    while t < utc(2026, 3, 31):  # step through spring-forward minute by minute
        t += 60
        world.clock.t = t
        world.sched.step()
    assert world.started() == ["d-20260328T013000Z", "d-20260329T010000Z", "d-20260330T003000Z"]
    world.launcher.calls.clear()
    world.at(2026, 10, 24, 12)  # months later: missed ticks are recorded, not run (no catchup_window)
    assert world.started() == []
    t = world.clock.t
    while t < utc(2026, 10, 27):  # fall-back: the repeated 02:30 runs once
        t += 60
        world.clock.t = t
        world.sched.step()
    assert world.started() == ["d-20261025T003000Z", "d-20261026T013000Z"]
    [missed] = world.journal("missed")
    assert missed["count"] == 208 and "catchup_window" in missed["reason"]


def test_progress_is_durable_a_restart_neither_repeats_nor_forgets(world: World) -> None:
    world.write("d.yaml", """
        schedule: "CRON_TZ=UTC */10 * * * *"
        catchup_window: 1h
        overlap_policy: all
        max_active_runs: 5
        steps:
          - id: a
            command: "true"
        """)
    world.at(2026, 3, 27, 12, 0, 5)
    world.at(2026, 3, 27, 12, 10, 1)
    assert world.started() == ["d-20260327T121000Z"]
    world.sched = world.new_scheduler()  # "restart" at once: nothing repeated
    world.at(2026, 3, 27, 12, 10, 30)
    assert world.started() == ["d-20260327T121000Z"]
    world.sched = world.new_scheduler()  # down for 35 minutes: the missed ticks run, oldest first
    world.at(2026, 3, 27, 12, 45, 0)
    assert world.started() == ["d-20260327T121000Z", "d-20260327T122000Z", "d-20260327T123000Z",
                               "d-20260327T124000Z"]


def test_catchup_window_runs_recent_ticks_and_records_older_ones_as_missed(world: World) -> None:
    world.launcher.runs_keep_running = True
    world.write("d.yaml", """
        schedule: "CRON_TZ=UTC 0 * * * *"
        catchup_window: 2h
        overlap_policy: all
        steps:
          - id: a
            command: "true"
        """)
    world.at(2026, 3, 27, 0, 30)
    world.sched = world.new_scheduler()
    world.at(2026, 3, 27, 6, 30)  # 01..06 were missed; 05 and 06 are inside the window
    assert world.started() == ["d-20260327T050000Z"]  # max_active_runs 1: the next one waits in the queue
    assert [c for c in world.launcher.calls if c[0] == "enqueue"] == [("enqueue", "d-20260327T060000Z")]
    [missed] = world.journal("missed")
    assert (missed["count"], missed["tick_utc"]) == (4, "2026-03-27T01:00:00Z")
    # one run records the range (its failure handlers notify); a restart does not record it again
    [(kind, run_id, why)] = [c for c in world.launcher.calls if c[0] == "missed"]
    assert run_id == missed["run_id"] == "d-20260327T010000Z"
    assert "missed 4 scheduled tick(s) 2026-03-27T01:00:00Z .. 2026-03-27T04:00:00Z" in why
    world.sched = world.new_scheduler()
    world.at(2026, 3, 27, 6, 31)
    assert len([c for c in world.launcher.calls if c[0] == "missed"]) == 1


@pytest.mark.parametrize("policy, started, other", [
    ("skip", ["d-20260327T050000Z"], [("skipped", "d-20260327T060000Z")]),
    ("latest", ["d-20260327T060000Z"], [("skipped", None)]),
])
def test_overlap_policy_on_catch_up(world: World, policy: str, started: list[str], other) -> None:
    world.launcher.runs_keep_running = True
    world.write("d.yaml", f"""
        schedule: "CRON_TZ=UTC 0 * * * *"
        catchup_window: 2h
        overlap_policy: {policy}
        steps:
          - id: a
            command: "true"
        """)
    world.at(2026, 3, 27, 4, 30)
    world.at(2026, 3, 27, 6, 30)
    assert world.started() == started
    assert [(r["action"], r.get("run_id")) for r in world.journal("skipped")] == other


def test_overlap_with_a_running_run_skip_queue_or_replace(world: World) -> None:
    for policy in ("skip", "all", "latest"):
        world.write(f"{policy}.yaml", f"""
            schedule: "CRON_TZ=UTC */5 * * * *"
            overlap_policy: {policy}
            steps:
              - id: a
                command: "true"
            """)
    world.at(2026, 3, 27, 12, 1)
    world.launcher.running = {"skip": 1, "all": 1, "latest": 1}
    world.at(2026, 3, 27, 12, 5)
    world.at(2026, 3, 27, 12, 10)
    assert sorted(world.launcher.calls) == [
        ("enqueue", "all-20260327T120500Z"), ("enqueue", "all-20260327T121000Z"),
        ("enqueue-replace", "latest-20260327T120500Z"), ("enqueue-replace", "latest-20260327T121000Z")]
    assert [r["run_id"] for r in world.journal("skipped")] == ["skip-20260327T120500Z", "skip-20260327T121000Z"]


def test_skip_if_successful_skips_when_a_run_succeeded_since_the_previous_tick(world: World) -> None:
    world.write("d.yaml", """
        schedule: "CRON_TZ=UTC 0 * * * *"
        skip_if_successful: true
        steps:
          - id: a
            command: "true"
        """)
    world.at(2026, 3, 27, 12, 30)
    world.launcher.succeeded_at["d"] = utc(2026, 3, 27, 12, 40)  # someone ran it by hand
    world.at(2026, 3, 27, 13, 0)
    world.at(2026, 3, 27, 14, 0)
    assert world.started() == ["d-20260327T140000Z"]
    assert world.journal("skipped")[0]["run_id"] == "d-20260327T130000Z"


def test_a_tick_whose_run_exists_is_not_started_again(world: World) -> None:
    world.write("d.yaml", DAILY)
    world.at(2026, 3, 27, 12)
    world.launcher.runs.add(("d", "d-20260328T013000Z"))  # started, then the scheduler crashed
    world.at(2026, 3, 28, 1, 30, 10)
    assert world.started() == [] and world.journal("exists")


def test_stop_and_restart_schedules(world: World) -> None:
    world.write("d.yaml", """
        schedule:
          start: "CRON_TZ=UTC 0 8 * * *"
          stop: "CRON_TZ=UTC 0 18 * * *"
          restart: "CRON_TZ=UTC 0 12 * * *"
        steps:
          - id: a
            command: "true"
        """)
    world.at(2026, 3, 27, 7)
    for hour in (8, 12, 18):
        world.at(2026, 3, 27, hour, 0, 1)
    assert world.launcher.calls == [("start", "d-20260327T080000Z"), ("restart", "d-20260327T120000Z"),
                                    ("stop", "d")]


def test_files_are_picked_up_changed_and_removed_and_a_bad_file_is_skipped(world: World) -> None:
    world.write("d.yaml", DAILY)
    bad = world.write("bad.yaml", """
        schedule: "61 * * * *"
        steps:
          - id: a
            command: "true"
        """)
    assert world.at(2026, 3, 27, 12) == utc(2026, 3, 28, 1, 30)
    report = "\n".join(world.lines)
    assert f"{bad}: does not compile; skipped" in report and "minute 61 is outside 0-59" in report
    # d becomes invalid: its last good plan stays scheduled
    world.write("d.yaml", DAILY.replace("30 2", "30 99"), mtime=utc(2026, 3, 27, 12, 1))
    assert world.at(2026, 3, 27, 12, 1) == utc(2026, 3, 28, 1, 30)
    assert "keeping its last good plan (d)" in world.lines[-1]
    # fixed, and now hourly; bad.yaml fixed too
    world.write("d.yaml", DAILY.replace("30 2", "30 *"), mtime=utc(2026, 3, 27, 12, 2))
    world.write("bad.yaml", DAILY.replace("30 2", "0 14"), mtime=utc(2026, 3, 27, 12, 2))
    assert world.at(2026, 3, 27, 12, 2) == utc(2026, 3, 27, 12, 30)
    assert set(world.sched.files.dags()) == {"bad", "d"}
    world.at(2026, 3, 27, 12, 30, 1)
    (world.dags / "d.yaml").unlink()
    assert world.at(2026, 3, 27, 12, 31) == utc(2026, 3, 27, 13)
    world.at(2026, 3, 27, 13, 30, 1)
    assert world.started() == ["d-20260327T123000Z"]
    assert any("removed" in line for line in world.lines)


def test_an_unreadable_dags_directory_is_reported_not_fatal(world: World) -> None:
    world.dags.rmdir()
    assert world.at(2026, 3, 27, 12) is None
    assert "cannot read the DAGs directory" in world.lines[-1]


def test_tick_records_rotate_instead_of_filling_the_disk(world: World, monkeypatch) -> None:
    from dagu.schedule import state as schedule_state

    monkeypatch.setattr(schedule_state, "ROTATE_BYTES", 2000)
    journal = TickJournal(str(world.home / "scheduler"))
    for n in range(60):
        journal.add({"dag": "d", "kind": "start", "action": "skipped", "tick": float(n), "reason": "x" * 40})
        journal.flush()
    path = world.home / "scheduler" / "ticks.jsonl"
    assert path.stat().st_size <= 2000 + 200 and (path.parent / "ticks.jsonl.1").stat().st_size <= 2000 + 200
    ticks = [r["tick"] for r in journal.read()]
    assert ticks == sorted(ticks) and ticks[-1] == 59.0 and 0 < len(ticks) < 60  # older records dropped
