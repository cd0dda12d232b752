"""Fire times across daylight saving, time zones and shortcuts (schedule/cron.py)."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from dagu.schedule import cron
from dagu.spec.plan import CronEntry

BERLIN = ZoneInfo("Europe/Berlin")


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


def local(t: float, tz=BERLIN) -> str:
    return datetime.fromtimestamp(t, tz).strftime("%m-%d %H:%M%z")


def test_a_daily_0230_job_is_not_skipped_on_spring_forward() -> None:
    times = cron.fire_times(CronEntry("30 2 * * *", "Europe/Berlin"), utc(2026, 3, 27), utc(2026, 3, 31))
    # 2026-03-29 02:30 does not exist in Berlin: the job runs when the clocks jump to 03:00
    assert [local(t) for t in times] == ["03-27 02:30+0100", "03-28 02:30+0100",
                                         "03-29 03:00+0200", "03-30 02:30+0200"]


def test_a_daily_0230_job_is_not_doubled_on_fall_back() -> None:
    times = cron.fire_times(CronEntry("30 2 * * *", "Europe/Berlin"), utc(2026, 10, 23), utc(2026, 10, 27))
    # 2026-10-25 02:30 happens twice: the job runs at the first
    assert [local(t) for t in times] == ["10-23 02:30+0200", "10-24 02:30+0200",
                                         "10-25 02:30+0200", "10-26 02:30+0100"]


def test_hourly_jobs_follow_real_time_across_both_transitions() -> None:
    hourly = CronEntry("@hourly", "Europe/Berlin")
    fall = cron.fire_times(hourly, utc(2026, 10, 24, 21, 59), utc(2026, 10, 25, 22, 59))  # local 25 October
    assert [local(t)[6:8] for t in fall] == ["00", "01", "02", "02", *[f"{h:02}" for h in range(3, 24)]]
    assert all(b - a == 3600 for a, b in zip(fall, fall[1:]))
    spring = cron.fire_times(hourly, utc(2026, 3, 28, 22, 59), utc(2026, 3, 29, 21, 59))  # local 29 March
    assert [local(t)[6:8] for t in spring] == ["00", "01", *[f"{h:02}" for h in range(3, 24)]]
    assert all(b - a == 3600 for a, b in zip(spring, spring[1:]))


def test_next_and_previous_fire_agree_with_fire_times_across_dst() -> None:
    entry = CronEntry("30 2 * * *", "Europe/Berlin")
    times = cron.fire_times(entry, utc(2026, 3, 20), utc(2026, 11, 5))
    for a, b in zip(times, times[1:]):
        assert cron.next_fire(entry, a) == b
        assert cron.previous_fire(entry, b) == a
        assert cron.next_fire(entry, (a + b) / 2) == b


def test_cron_tz_and_utc_read_the_same_expression_differently() -> None:
    after = utc(2026, 6, 1)
    assert cron.next_fire(CronEntry("0 9 * * *", "UTC"), after) == utc(2026, 6, 1, 9)
    assert cron.next_fire(CronEntry("0 9 * * *", "Asia/Tokyo"), after) == utc(2026, 6, 2, 0)
    assert cron.next_fire(CronEntry("0 9 * * *", "America/New_York"), after) == utc(2026, 6, 1, 13)


def test_shortcuts_and_run_id_stamps() -> None:
    assert cron.next_fire(CronEntry("@daily", "UTC"), utc(2026, 1, 1, 5)) == utc(2026, 1, 2)
    assert cron.next_fire(CronEntry("@weekly", "UTC"), utc(2026, 1, 1)) == utc(2026, 1, 4)  # a Sunday
    assert cron.stamp(utc(2026, 3, 29, 1, 0, 0)) == "20260329T010000Z"
    assert cron.next_fire(CronEntry("0 0 31 2 *", "UTC"), utc(2026, 1, 1)) is None  # never fires


def test_a_dag_level_timezone_reads_every_expression_without_its_own_cron_tz(tmp_path) -> None:
    from dagu.compiler.pipeline import compile_file

    path = tmp_path / "tz.yaml"
    path.write_text('timezone: Asia/Tokyo\nschedule: ["0 9 * * *", "CRON_TZ=UTC 0 9 * * *"]\nsteps: [echo hi]\n')
    result = compile_file(str(path))
    assert result.plan is not None, result
    tokyo, utc_entry = result.plan.main.schedule.start
    assert (tokyo.tz, utc_entry.tz) == ("Asia/Tokyo", "UTC")
    first = cron.next_fire(tokyo, utc(2026, 6, 1))
    assert datetime.fromtimestamp(first, timezone.utc).hour == 0  # 09:00 in Tokyo is 00:00 UTC
