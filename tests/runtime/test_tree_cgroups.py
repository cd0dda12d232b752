"""Step cgroups of one run: an empty one serves the next attempt, one with a process in it never does.

Against the host's real cgroup hierarchy (skipped where none is writable)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from dagu.process.cgroup import cgroup_dir
from dagu.process.tree import TreeTracker, probe


@pytest.fixture
def tracker(tmp_path: Path):
    found = TreeTracker(str(tmp_path / "run"))
    if found.run_dir is None:
        found.close()
        pytest.skip("no writable cgroup on this host")
    yield found
    found.close()


@pytest.fixture
def sleeper_in(tracker: TreeTracker):
    """Start a `sleep` in a cgroup; every one still running is killed when the test ends."""
    started: list[subprocess.Popen] = []

    def start(cgroup: str) -> subprocess.Popen:
        proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
        started.append(proc)
        Path(cgroup, "cgroup.procs").write_text(str(proc.pid))
        return proc
    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _end(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()


def test_an_emptied_cgroup_serves_the_next_attempt_and_a_busy_one_does_not(tracker: TreeTracker,
                                                                          sleeper_in) -> None:
    first, second = tracker.prepare(), tracker.prepare()
    assert first.cgroup is not None and second.cgroup is not None and first.cgroup != second.cgroup
    leader = sleeper_in(first.cgroup)
    tracker.started(first, leader.pid)
    _end(leader)
    used = first.cgroup
    assert tracker.left_behind(first) == [] and first.emptied and first.cgroup is None
    assert tracker.prepare().cgroup == used  # nothing was left in it

    leader, stray = sleeper_in(second.cgroup), sleeper_in(second.cgroup)
    tracker.started(second, leader.pid)
    _end(leader)
    assert tracker.left_behind(second) == [stray.pid]
    assert tracker.prepare().cgroup not in (second.cgroup, used)  # still holds the stray
    busy = second.cgroup
    tracker.release(second)  # kills the stray and removes the cgroup
    assert stray.wait(timeout=5) == -signal.SIGKILL
    assert not os.path.exists(busy)


def test_close_removes_every_step_cgroup_and_the_runs(tracker: TreeTracker) -> None:
    trees = [tracker.prepare() for _ in range(3)]
    for tree in trees:
        assert tracker.left_behind(tree) == []  # never used: empty, kept for later
    run_dir = tracker.run_dir
    assert run_dir is not None and len(os.listdir(run_dir)) > 3  # step-1..3 and the cgroup files
    tracker.close()
    assert not os.path.exists(run_dir)


def test_a_cgroup_with_a_sub_runs_process_below_it_is_not_used_again(tracker: TreeTracker, sleeper_in) -> None:
    """A forked sub-DAG supervisor makes its own run's cgroups under its step's: a process alive
    down there (its supervisor gone) keeps the step's cgroup from serving another attempt, and
    releasing the step kills it."""
    tree = tracker.prepare()
    assert tree.cgroup is not None
    nested = os.path.join(tree.cgroup, "dagu-run-sub", "step-1")
    os.makedirs(nested)
    orphan = sleeper_in(nested)
    assert tracker.left_behind(tree) == []  # none of the step's own
    assert not tree.emptied and tree.cgroup is not None
    assert tracker.prepare().cgroup != tree.cgroup
    used = tree.cgroup
    tracker.release(tree)
    assert orphan.wait(timeout=5) == -signal.SIGKILL
    assert not os.path.exists(used)


def test_only_a_few_emptied_cgroups_are_kept(tracker: TreeTracker) -> None:
    """A wide fan-out removes its cgroups as they empty, instead of keeping them all to the end."""
    trees = [tracker.prepare() for _ in range(40)]
    paths = [tree.cgroup for tree in trees]
    for tree in trees:
        assert tracker.left_behind(tree) == []
    kept = [path for path in paths if path is not None and os.path.exists(path)]
    assert 0 < len(kept) < 40
    assert {tracker.prepare().cgroup for _ in kept} == set(kept)


def test_a_probe_answers_a_directory_or_why_not() -> None:
    """Both are strings: the pair says which one it is (and the session mechanism needs neither)."""
    assert probe("session") == (None, None)
    for mechanism in ("cgroup-v2", "cgroup-v1"):
        base, why = probe(mechanism)
        assert (base is None) != (why is None)
        assert base is None or (os.path.isdir(base) and not base.endswith("/"))


def test_a_cgroup_directory_is_under_the_mount_without_a_trailing_slash() -> None:
    assert cgroup_dir(("/sys/fs/cgroup/cpuacct", "/", "rw,cpuacct"), "/") == "/sys/fs/cgroup/cpuacct"
    assert cgroup_dir(("/sys/fs/cgroup", "/", "rw"), "/user.slice/a") == "/sys/fs/cgroup/user.slice/a"
    assert cgroup_dir(("/cg", "/docker/x", "rw"), "/docker/x") == "/cg"
    assert cgroup_dir(("/cg", "/docker/x", "rw"), "/docker/x/step") == "/cg/step"
    assert cgroup_dir(("/cg", "/docker/x", "rw"), "/docker/xy") == "/cg/docker/xy"
