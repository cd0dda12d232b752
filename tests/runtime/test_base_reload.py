"""The scheduler and base.yaml: not a DAG itself, and editing it recompiles every DAG beside it.

Fake clock and fake launcher, as in test_scheduler.py: milliseconds, no processes.
"""

from __future__ import annotations

import os
import textwrap
from datetime import datetime, timezone
from pathlib import Path

import pytest

from dagu.compiler import base_config
from dagu.compiler.pipeline import compile_file
from dagu.compiler.render import render
from dagu.schedule import dag_files
from dagu.schedule.clock import FakeClock
from dagu.schedule.scheduler import Scheduler


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


class FakeLauncher:
    def __init__(self) -> None:
        self.started: list[str] = []
        self.runs: set[tuple[str, str]] = set()

    def exists(self, dag: str, run_id: str) -> bool:
        return (dag, run_id) in self.runs

    def active(self, dag: str) -> int:
        return 0

    def last_success(self, dag: str) -> float | None:
        return None

    def start(self, plan, plan_path: str, run_id: str) -> None:
        assert os.path.exists(plan_path)
        self.started.append(run_id)
        self.runs.add((plan.root, run_id))


class World:
    def __init__(self, tmp: Path, now: float) -> None:
        self.dags = tmp / "dags"
        self.dags.mkdir()
        self.clock = FakeClock(now)
        self.launcher = FakeLauncher()
        self.lines: list[str] = []
        self.compiled: list[str] = []
        self.mtime = now - 3600  # each write moves a file's mtime on by one second
        self.sched = Scheduler(str(tmp / "home"), str(self.dags), self.compile, self.launcher, self.clock,
                               self.lines.append)

    def compile(self, path: str):
        self.compiled.append(os.path.basename(path))
        result = compile_file(path)
        return (result.plan, None) if result.ok else (None, render("text", result.diagnostics, 1))

    def write(self, path: Path, text: str) -> Path:
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        self.touch(path)
        return path

    def touch(self, path: Path) -> None:
        self.mtime += 1
        os.utime(path, (self.mtime, self.mtime))

    def at(self, *when: int) -> None:
        self.clock.t = utc(*when)
        self.sched.step()

    def plan_env(self, dag: str) -> list[tuple[str, list]]:
        return [(e.name, e.value) for e in self.sched.files.dags()[dag].plan.main.env]


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.delenv("DAGU_BASE_CONFIG", raising=False)
    return World(tmp_path, utc(2026, 3, 27, 12))


def test_editing_base_yaml_recompiles_every_dag_of_the_directory(world: World) -> None:
    base = world.write(world.dags / "base.yaml", """
        schedule: "CRON_TZ=UTC 0 * * * *"
        env:
          - TARGET: blue
        """)
    for name in ("a", "b"):
        world.write(world.dags / f"{name}.yaml", "steps: [echo $TARGET]\n")
    world.at(2026, 3, 27, 12, 0, 5)
    assert sorted(world.sched.files.dags()) == ["a", "b"]  # base.yaml is no DAG
    assert sorted(world.compiled) == ["a.yaml", "b.yaml"]
    world.at(2026, 3, 27, 13, 0, 1)
    assert sorted(world.launcher.started) == ["a-20260327T130000Z", "b-20260327T130000Z"]

    world.compiled.clear()
    world.write(base, """
        schedule: "CRON_TZ=UTC 30 * * * *"
        env:
          - TARGET: green
        """)
    world.at(2026, 3, 27, 13, 10)
    assert sorted(world.compiled) == ["a.yaml", "b.yaml"]
    assert any("a.yaml: reloaded a" in line for line in world.lines)
    assert world.plan_env("b") == [("TARGET", ["green"])]
    world.at(2026, 3, 27, 13, 30, 1)  # the new schedule, from base.yaml, is what runs
    assert sorted(world.launcher.started[2:]) == ["a-20260327T133000Z", "b-20260327T133000Z"]

    world.compiled.clear()
    world.touch(base)  # a new mtime, the same bytes: nothing to recompile
    world.at(2026, 3, 27, 13, 40)
    assert world.compiled == []


def test_a_broken_base_yaml_keeps_the_last_good_plans_and_says_where(world: World) -> None:
    base = world.write(world.dags / "base.yaml", "env:\n  - TARGET: blue\n")
    world.write(world.dags / "a.yaml", "steps: [echo $TARGET]\n")
    world.at(2026, 3, 27, 12, 0, 5)
    world.write(base, "env:\n  - TARGET: blue\ntimezone: Mars/Olympus\n")
    world.at(2026, 3, 27, 12, 1)
    assert world.plan_env("a") == [("TARGET", ["blue"])]  # still scheduled, from its last good plan
    report = "\n".join(world.lines)
    assert "keeping its last good plan (a)" in report
    assert "base.yaml:3:11: error: unknown time zone 'Mars/Olympus'" in report

    world.write(base, "env:\n  - TARGET: red\n")
    world.at(2026, 3, 27, 12, 2)
    assert world.plan_env("a") == [("TARGET", ["red"])]


def test_removing_base_yaml_recompiles_without_it(world: World) -> None:
    base = world.write(world.dags / "base.yaml", "env:\n  - TARGET: blue\n")
    world.write(world.dags / "a.yaml", "steps: [echo hi]\n")
    world.at(2026, 3, 27, 12, 0, 5)
    assert world.plan_env("a") == [("TARGET", ["blue"])]
    base.unlink()
    world.at(2026, 3, 27, 12, 1)
    assert world.plan_env("a") == []


def test_a_base_config_named_by_dagu_base_config_is_watched_too(world: World, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    shared = world.write(tmp_path / "prod.yaml", "env:\n  - TARGET: blue\n")
    monkeypatch.setenv("DAGU_BASE_CONFIG", str(shared))
    world.write(world.dags / "a.yaml", "steps: [echo $TARGET]\n")
    world.write(world.dags / "base.yaml", "env:\n  - TARGET: ignored\n")  # not used, and still no DAG
    world.at(2026, 3, 27, 12, 0, 5)
    assert list(world.sched.files.dags()) == ["a"]
    assert world.plan_env("a") == [("TARGET", ["blue"])]
    world.write(shared, "env:\n  - TARGET: green\n")
    world.at(2026, 3, 27, 12, 1)
    assert world.plan_env("a") == [("TARGET", ["green"])]


def test_the_runtime_looks_where_the_compiler_does() -> None:
    """The runtime may not import the compiler, so it keeps its own copy of the rule."""
    assert dag_files.BASE_CONFIG_NAMES == base_config.BASE_CONFIG_NAMES
    assert dag_files.BASE_CONFIG_ENV == base_config.BASE_CONFIG_ENV
