"""The accounting sampler against real process trees: memory peaks, CPU, disk I/O, escapes.

Assertions on memory are made on the sampler's own TreeStats where rusage would hide a broken
sampler (wait4's ru_maxrss already includes reaped descendants' largest RSS).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dagu.process.accounting import Sampler, TreeStats, Usage, read_stat, usage_from

MiB = 1 << 20
PY = sys.executable


def run_watched(sampler: Sampler, argv: list[str], **watch: object) -> tuple[TreeStats, Usage, int]:
    """Spawn argv as the supervisor does, watch it, wait4 it, unwatch it."""
    started = time.time()
    proc = subprocess.Popen(argv, start_new_session=True)
    sampler.watch(proc.pid, **watch)  # type: ignore[arg-type]
    _, status, rusage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    stats = sampler.unwatch(proc.pid)
    return stats, usage_from(started, time.time(), rusage, stats), proc.returncode


def allocate(mib: int, hold: float, delay: float = 0.0) -> str:
    """Python code that waits, fills `mib` MiB (bytes multiplication touches every page), holds it."""
    return f"import time; time.sleep({delay}); b = b'x' * ({mib} << 20); time.sleep({hold})"


@pytest.fixture
def sampler() -> Sampler:
    with Sampler() as s:
        yield s


def test_peak_of_a_300_mib_child_is_within_10_percent(sampler: Sampler) -> None:
    stats, usage, code = run_watched(sampler, [PY, "-c", allocate(300, hold=0.3)])
    assert code == 0
    assert 0.9 * 300 * MiB <= stats.peak_rss_bytes <= 1.1 * 300 * MiB, stats
    assert 0.9 * 300 * MiB <= usage.peak_rss_bytes <= 1.1 * 300 * MiB, usage
    assert stats.samples >= 3


def test_a_200_ms_spike_in_a_grandchild_is_seen(sampler: Sampler) -> None:
    spike = allocate(200, hold=0.2, delay=0.3)
    # sh -> subshell -> python: the `; true` keeps the subshell from exec'ing python.
    stats, _, code = run_watched(sampler, ["sh", "-c", f'("{PY}" -c "{spike}"; true) & wait'])
    assert code == 0
    assert stats.peak_rss_bytes >= 190 * MiB, stats
    assert stats.processes >= 3, stats


def test_peak_is_the_sum_over_the_tree_not_the_largest_process(sampler: Sampler) -> None:
    hog = allocate(100, hold=0.5)
    stats, usage, code = run_watched(sampler, ["sh", "-c", f'"{PY}" -c "{hog}" & "{PY}" -c "{hog}" & wait'])
    assert code == 0
    assert stats.peak_rss_bytes >= 195 * MiB, stats
    assert usage.peak_rss_bytes >= 195 * MiB


def test_a_process_that_escaped_the_tree_is_found_by_its_session() -> None:
    # The subshell exits at once, so python is reparented to init before any sample can see it
    # as a descendant; only the session sweep finds it.
    hog = allocate(150, hold=0.5, delay=0.3)
    with Sampler(sweep_interval_sec=0.1) as sampler:
        stats, _, _ = run_watched(sampler, ["sh", "-c", f'("{PY}" -c "{hog}" &); sleep 1.2'])
    assert stats.peak_rss_bytes >= 140 * MiB, stats


def test_cpu_seconds_of_a_busy_loop_are_plausible(sampler: Sampler) -> None:
    spin = "import time\nend = time.process_time() + 0.5\nwhile time.process_time() < end: pass"
    stats, usage, code = run_watched(sampler, [PY, "-c", spin])
    assert code == 0
    assert 0.45 <= usage.user_sec + usage.sys_sec <= 2.0, usage
    assert 0.3 <= stats.user_sec + stats.sys_sec <= 2.0, stats  # sampled, up to one interval short
    assert usage.wall_sec >= 0.45


def filesystem_type(path: Path) -> str:
    """The type of the filesystem holding path, from the longest matching mount point."""
    best, kind = "", ""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        mount = left.split()[4]
        if (str(path) + "/").startswith(mount.rstrip("/") + "/") and len(mount) >= len(best):
            best, kind = mount, right.split()[0]
    return kind


@pytest.fixture
def disk_dir(tmp_path: Path) -> Path:
    """A directory on a real block device: read_bytes/write_bytes count storage I/O, which a
    tmpfs never does."""
    for candidate in (tmp_path, Path("/var/tmp")):
        if filesystem_type(candidate) not in ("tmpfs", "ramfs", ""):
            directory = candidate / f"dagu-io-{os.getpid()}" if candidate != tmp_path else candidate
            directory.mkdir(exist_ok=True)
            return directory
    pytest.skip("no disk-backed directory: /tmp and /var/tmp are both in memory")


def test_bytes_written_and_read_by_a_child_are_counted(sampler: Sampler, disk_dir: Path,
                                                      tmp_path: Path) -> None:
    target = disk_dir / "fifty.bin"
    script = tmp_path / "io.py"
    script.write_text(f"""
import os, time
path = {str(target)!r}
with open(path, "wb") as fh:
    for _ in range(50):
        fh.write(b"x" * (1 << 20))
    fh.flush(); os.fsync(fh.fileno())
    os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)  # so reading it back hits the disk
with open(path, "rb") as fh:
    while fh.read(1 << 20):
        pass
time.sleep(0.4)  # let a sample see the final counters
""")
    try:
        # The shell outlives the writer, so a sample sees the writer gone and its counters moved
        # into the shell's (the kernel adds a reaped child's I/O to its parent's): counted once.
        stats, usage, rc = run_watched(sampler, ["sh", "-c", f'"{PY}" "{script}"; rc=$?; sleep 0.3; exit $rc'])
    finally:
        target.unlink(missing_ok=True)
    assert rc == 0
    assert 50 * MiB <= stats.write_bytes <= 60 * MiB, stats
    assert 40 * MiB <= stats.read_bytes <= 60 * MiB, stats
    assert usage.write_bytes >= 50 * MiB and usage.read_bytes >= 40 * MiB


def test_over_limit_callback_fires_once_with_the_tree_rss() -> None:
    calls: list[tuple[int, int]] = []
    with Sampler() as sampler:
        proc = subprocess.Popen([PY, "-c", allocate(120, hold=0.6)], start_new_session=True)
        sampler.watch(proc.pid, 50 * MiB, lambda pid, rss: calls.append((pid, rss)))
        proc.wait()
        sampler.unwatch(proc.pid)
    assert len(calls) == 1, calls
    assert calls[0][0] == proc.pid and calls[0][1] > 50 * MiB


def test_the_callback_can_kill_the_tree() -> None:
    with Sampler() as sampler:
        proc = subprocess.Popen(["sh", "-c", f'"{PY}" -c "{allocate(120, hold=30)}"; true'],
                                start_new_session=True)
        sampler.watch(proc.pid, 50 * MiB, lambda pid, rss: os.killpg(pid, signal.SIGKILL))
        assert proc.wait(timeout=20) == -signal.SIGKILL
        sampler.unwatch(proc.pid)


def test_vanished_processes_never_raise(sampler: Sampler) -> None:
    gone = subprocess.Popen(["true"], start_new_session=True)
    gone.wait()
    sampler.watch(gone.pid)  # reaped before watch: nothing to see
    assert sampler.unwatch(gone.pid).peak_rss_bytes == 0

    zombie = subprocess.Popen(["true"], start_new_session=True)
    time.sleep(0.1)  # exited, not reaped
    sampler.watch(zombie.pid)
    time.sleep(0.1)
    zombie.wait()
    stats = sampler.unwatch(zombie.pid)
    assert stats.samples >= 2
    assert sampler.unwatch(zombie.pid) == TreeStats(0, 0, 0, 0)  # not watched (any more): zeros


def test_unwatch_closes_the_files_it_held(sampler: Sampler) -> None:
    before = len(os.listdir("/proc/self/fd"))
    proc = subprocess.Popen(["sh", "-c", "sleep 0.3 & sleep 0.3 & wait"], start_new_session=True)
    sampler.watch(proc.pid)
    time.sleep(0.15)
    during = len(os.listdir("/proc/self/fd"))
    proc.wait()
    sampler.unwatch(proc.pid)
    assert during > before  # it does hold /proc files while watching...
    assert len(os.listdir("/proc/self/fd")) == before  # ...and lets them go


def test_read_stat_copes_with_odd_command_names(tmp_path: Path) -> None:
    odd = tmp_path / "a b) (c"
    odd.symlink_to("/bin/sleep")
    proc = subprocess.Popen([str(odd), "5"])
    try:
        time.sleep(0.1)
        stat = read_stat(proc.pid)
        assert stat is not None and stat.ppid == os.getpid() and stat.state in "SR"
    finally:
        proc.kill()
        proc.wait()


def test_watching_a_pid_twice_or_after_close_is_a_programming_error() -> None:
    sampler = Sampler()
    proc = subprocess.Popen(["sleep", "1"], start_new_session=True)
    try:
        sampler.watch(proc.pid)
        with pytest.raises(ValueError, match="already watched"):
            sampler.watch(proc.pid)
        sampler.close()
        with pytest.raises(RuntimeError):
            sampler.watch(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def test_usage_combines_rusage_and_sampling_and_round_trips() -> None:
    stats = TreeStats(peak_rss_bytes=10 * MiB, read_bytes=0, write_bytes=4096, samples=7,
                      user_sec=0.01, sys_sec=0.0)
    proc = subprocess.Popen([PY, "-c", "b = b'x' * (40 << 20)"])
    _, _, rusage = os.wait4(proc.pid, 0)
    usage = usage_from(100.0, 101.25, rusage, stats)
    assert usage.wall_sec == 1.25
    assert usage.peak_rss_bytes >= 40 * MiB  # ru_maxrss (KiB) is the floor
    assert usage.write_bytes >= 4096 and usage.samples == 7
    assert Usage.from_dict(usage.to_dict()).peak_rss_bytes == usage.peak_rss_bytes
    assert set(usage.to_dict()) == {"wall_sec", "user_sec", "sys_sec", "peak_rss_bytes",
                                    "read_bytes", "write_bytes", "samples"}
    assert usage_from(5.0, 4.0, None, stats).wall_sec == 0.0
