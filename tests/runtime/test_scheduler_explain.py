"""`dagu compile --explain-schedule`: next fire times and what daylight saving does, at a fixed now."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from dagu.compiler.pipeline import compile_file
from dagu.schedule import cron
from dagu.schedule.explain import explain_entry, explain_plan, render_text
from dagu.spec.plan import CronEntry
from tests.runtime.conftest import Env
from tests.runtime.test_scheduler import utc

BERLIN_0230 = CronEntry("30 2 * * *", "Europe/Berlin")


def test_spring_forward_names_the_first_valid_instant_after_the_missing_0230() -> None:
    x = explain_entry("d", "start", BERLIN_0230, utc(2026, 3, 27, 12), count=3)
    assert [(f.local, f.utc) for f in x.fires] == [
        ("2026-03-28 02:30:00 +01:00 CET", "2026-03-28T01:30:00Z"),
        ("2026-03-29 03:00:00 +02:00 CEST", "2026-03-29T01:00:00Z"),
        ("2026-03-30 02:30:00 +02:00 CEST", "2026-03-30T00:30:00Z")]
    assert [f.note is not None for f in x.fires] == [False, True, False]
    assert "first valid instant after" in x.fires[1].note
    assert x.dst == ("2026-03-29: clocks go forward 02:00 -> 03:00, so 02:30 does not exist that day; it runs at "
                     "2026-03-29 03:00:00 +02:00 CEST (2026-03-29T01:00:00Z), the first valid instant after")


def test_fall_back_runs_a_fixed_hour_once_and_a_star_hour_in_both_copies() -> None:
    now = utc(2026, 10, 24, 12)
    fixed = explain_entry("d", "start", BERLIN_0230, now, count=2)
    assert [f.utc for f in fixed.fires] == ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
    assert fixed.fires[0].note == "DST: this wall-clock time happens twice; it runs once, at the first"
    assert fixed.dst == ("2026-10-25: clocks go back 03:00 -> 02:00, so 02:30 happens twice that day; it runs "
                         "once, at the first (2026-10-25 02:30:00 +02:00 CEST, 2026-10-25T00:30:00Z)")
    hourly = explain_entry("d", "start", CronEntry("30 * * * *", "Europe/Berlin"), utc(2026, 10, 24, 23, 15), 4)
    assert [f.local for f in hourly.fires] == [
        "2026-10-25 01:30:00 +02:00 CEST", "2026-10-25 02:30:00 +02:00 CEST",
        "2026-10-25 02:30:00 +01:00 CET", "2026-10-25 03:30:00 +01:00 CET"]
    assert hourly.dst.endswith("happens twice that day; it runs in both (an hour field of * follows real time)")


def test_the_next_dst_change_is_flagged_even_beyond_the_listed_times() -> None:
    x = explain_entry("d", "start", BERLIN_0230, utc(2026, 4, 1), count=2)
    assert all(f.note is None for f in x.fires)
    assert x.dst is not None and x.dst.startswith("2026-10-25: clocks go back")
    # only Mondays: neither 2026-10-25 nor 2027-03-28 (Sundays) touches it, nor any change within 400 days
    assert explain_entry("d", "start", CronEntry("30 2 * * 1", "Europe/Berlin"), utc(2026, 4, 1)).dst is None
    assert explain_entry("d", "start", CronEntry("0 12 * * *", "America/New_York"), utc(2026, 4, 1)).dst is None
    assert explain_entry("d", "start", CronEntry("*/5 * * * *", "UTC"), utc(2026, 4, 1)).dst is None


def test_the_listed_times_are_the_instants_the_scheduler_fires_at() -> None:
    entry = CronEntry("*/20 1-3 * * *", "Europe/Berlin")
    now = utc(2026, 3, 28, 12)
    x = explain_entry("d", "start", entry, now, count=40)
    assert [f.at for f in x.fires] == cron.fire_times(entry, now, x.fires[-1].at)
    assert "02:00, 02:20, 02:40 do not exist" in x.dst  # a fixed hour range: moved to 03:00, once


def _workflow(tmp: Path, text: str) -> Path:
    path = tmp / "w.yaml"
    path.write_text(textwrap.dedent(text))
    return path


WORKFLOW = """
    schedule:
      start: "CRON_TZ=Europe/Berlin 30 2 * * *"
      stop: ["CRON_TZ=UTC 0 6 * * *"]
    steps:
      - id: a
        command: "true"
    """


def test_explain_plan_lists_every_expression_of_the_file(tmp_path: Path) -> None:
    plan = compile_file(str(_workflow(tmp_path, WORKFLOW))).plan
    xs = explain_plan(plan, utc(2026, 3, 27, 12), count=1)
    assert [(x.dag, x.kind, x.expr, x.zone) for x in xs] == [
        ("w", "start", "30 2 * * *", "Europe/Berlin"), ("w", "stop", "0 6 * * *", "UTC")]
    text = render_text("w.yaml", xs)
    assert text.splitlines()[:3] == [
        "w.yaml: w: start '30 2 * * *' in Europe/Berlin",
        "  2026-03-28 02:30:00 +01:00 CET  =  2026-03-28T01:30:00Z",
        "  DST: 2026-03-29: clocks go forward 02:00 -> 03:00, so 02:30 does not exist that day; it runs at "
        "2026-03-29 03:00:00 +02:00 CEST (2026-03-29T01:00:00Z), the first valid instant after"]
    assert text.splitlines()[-1] == "  DST: no clock change in the next 400 days affects it"


def test_dagu_compile_explain_schedule_prints_and_writes_no_plan(env: Env) -> None:
    path = env.write("w.yaml", WORKFLOW)
    res = env.run("compile", str(path), "--explain-schedule", "-n", "3")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == f"{path}: w: start '30 2 * * *' in Europe/Berlin"
    assert len([ln for ln in lines if ln.startswith("  20")]) == 6  # 3 per expression
    assert lines[4].startswith("  DST: ") and "clocks go" in lines[4]  # Berlin changes within 400 days
    assert not (env.home / "plans").exists()
    data = json.loads(env.run("compile", str(path), "--explain-schedule", "--format", "json").stdout)
    assert [len(s["fires"]) for s in data[0]["schedules"]] == [5, 5]
    bad = env.write("bad.yaml", "schedule: '61 * * * *'\nsteps:\n  - id: a\n    command: 'true'\n")
    res = env.run("compile", str(bad), "--explain-schedule")
    assert res.returncode == 1 and f"{bad}:1:" in res.stderr and res.stdout == ""
