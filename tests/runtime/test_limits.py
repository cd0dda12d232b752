"""Limits on real processes: rlimits in the child, memory by every mechanism this host has.

A memory mechanism the host lacks is skipped with the probe's reason; the ones it has must kill
a hog and say which limit and which mechanism did it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dagu.process.accounting import Sampler, read_stat
from dagu.process.limits import (MECHANISMS, LimitError, Limits, MemoryGuard, _can_raise_hard,
                                 describe_failure, format_size, limits_from, parse_size,
                                 preexec_for, probe_memory, rlimits_for)

MiB = 1 << 20
PY = sys.executable
# Grows by 20 MiB every 20 ms up to 1 GiB, touching every page; prints if it ever gets there.
HOG = """
import time
chunks = []
for _ in range(50):
    chunks.append(b"x" * (20 << 20))
    time.sleep(0.02)
print("survived")
"""


# --------------------------------------------------------------------------
# Sizes and merging
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "size"), [
    (1048576, 1048576), ("1048576", 1048576), ("512M", 512 * MiB), ("2G", 2 << 30), ("64K", 65536),
    ("1.5GiB", 3 << 29), ("100MB", 100 * MiB), ("64kb", 65536), ("10 Mi", 10 * MiB), ("7B", 7),
])
def test_parse_size(text: int | str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(("text", "message"), [
    ("12Q", "invalid size '12Q': expected bytes, or a number with a unit K, M, G or T"),
    ("1.5", "a number of bytes must be whole"),
    ("", "invalid size ''"),
    (-1, "must not be negative"),
    (True, "expected a number of bytes"),
])
def test_parse_size_errors_say_what_is_expected(text: object, message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_size(text)  # type: ignore[arg-type]
    assert message in str(err.value)


def test_format_size() -> None:
    assert [format_size(n) for n in (100 * MiB, 3 << 29, 1000, 2048)] == \
        ["100 MiB", "1.5 GiB", "1000 bytes", "2 KiB"]


def test_step_limits_override_the_dags_key_by_key() -> None:
    dag = {"limits": {"memory": "1G", "cpu_sec": 60, "open_files": 256}}
    step = {"limits": {"memory": "256M", "file_size": "10M"}}
    assert limits_from(dag, step) == Limits(memory_bytes=256 * MiB, cpu_sec=60, open_files=256,
                                            file_size_bytes=10 * MiB)
    assert limits_from({}, {}) == Limits() and not Limits()
    assert limits_from({}, {"limits": {"processes": 5}}).processes == 5


@pytest.mark.parametrize(("step", "message"), [
    ({"limits": {"cpu": 1}}, "unknown limit 'cpu'"),
    ({"limits": {"cpu_sec": 0}}, "limits.cpu_sec must be a positive integer, got 0"),
    ({"limits": {"memory": "lots"}}, "limits.memory: invalid size 'lots'"),
])
def test_bad_limits_are_named(step: dict, message: str) -> None:
    with pytest.raises(ValueError) as err:
        limits_from({}, step)
    assert message in str(err.value)


# --------------------------------------------------------------------------
# rlimits
# --------------------------------------------------------------------------


def test_no_limits_no_preexec() -> None:
    assert preexec_for(Limits()) is None
    assert preexec_for(Limits(memory_bytes=MiB)) is None  # memory is never an rlimit


def test_cpu_limit_kills_a_spinning_child_with_sigxcpu() -> None:
    limits = Limits(cpu_sec=1)
    proc = subprocess.run([PY, "-c", "while True: pass"], preexec_fn=preexec_for(limits), timeout=30)
    assert proc.returncode == -signal.SIGXCPU
    assert describe_failure(limits, proc.returncode, False, False) == \
        "killed by SIGXCPU: CPU time limit of 1 s exceeded (limits.cpu_sec)"


def test_open_files_limit_applies_to_the_child() -> None:
    code = """
import resource
opened = []
try:
    for _ in range(100):
        opened.append(open("/dev/null"))
except OSError as exc:
    print(len(opened), exc.errno, resource.getrlimit(resource.RLIMIT_NOFILE))
"""
    out = subprocess.run([PY, "-c", code], preexec_fn=preexec_for(Limits(open_files=20)),
                         capture_output=True, text=True, timeout=30).stdout.split(maxsplit=2)
    assert int(out[0]) < 20 and out[1] == "24"  # EMFILE
    assert out[2].strip() == "(20, 20)"


def test_file_size_limit_kills_a_writer_with_sigxfsz(tmp_path: Path) -> None:
    limits = Limits(file_size_bytes=MiB)
    dd = ["dd", "if=/dev/zero", f"of={tmp_path / 'big'}", "bs=65536", "count=32"]
    proc = subprocess.run(dd, preexec_fn=preexec_for(limits), capture_output=True, timeout=30)
    assert proc.returncode == -signal.SIGXFSZ
    assert (tmp_path / "big").stat().st_size == MiB
    assert describe_failure(limits, proc.returncode, False, False) == \
        "killed by SIGXFSZ: file size limit of 1 MiB exceeded (limits.file_size)"
    # Through a shell the same death is exit status 128+25.
    shell = subprocess.run(["sh", "-c", " ".join(dd) + "; exit $?"], preexec_fn=preexec_for(limits),
                           capture_output=True, timeout=30)
    assert shell.returncode == 128 + signal.SIGXFSZ
    assert "(exit status 153 from a shell)" in describe_failure(limits, shell.returncode, False, False)


def test_processes_limit_is_set_in_the_child() -> None:
    code = "import resource; print(resource.getrlimit(resource.RLIMIT_NPROC))"
    out = subprocess.run([PY, "-c", code], preexec_fn=preexec_for(Limits(processes=50)),
                         capture_output=True, text=True, timeout=30).stdout
    assert out.strip() == "(50, 50)"


def test_a_limit_above_the_hard_limit_fails_before_spawning() -> None:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no hard limit on open files here")
    asked = Limits(open_files=hard + 1)
    if _can_raise_hard():
        assert (resource.RLIMIT_NOFILE, hard + 1, hard + 1) in rlimits_for(asked)
    else:
        with pytest.raises(LimitError, match=f"limits.open_files of {hard + 1} is above"):
            preexec_for(asked)


@pytest.mark.parametrize(("limits", "code", "oom", "over"), [
    (Limits(cpu_sec=5), 1, False, False),  # an ordinary failure
    (Limits(), -signal.SIGXCPU, False, False),  # no cpu limit: not ours to explain
    (Limits(cpu_sec=5), -signal.SIGTERM, False, False),
    (Limits(memory_bytes=MiB), 0, True, False),  # succeeded despite an OOM kill inside
    (Limits(cpu_sec=5), 3, False, False),
])
def test_failures_not_caused_by_a_limit_are_not_blamed_on_one(limits: Limits, code: int, oom: bool,
                                                              over: bool) -> None:
    assert describe_failure(limits, code, oom, over) is None


# --------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------


def guard_for(mechanism: str) -> MemoryGuard:
    _, why = probe_memory(mechanism)
    if why is not None:
        pytest.skip(f"{mechanism} is not available on this host: {why}")
    return MemoryGuard(mechanism)


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_memory_limit_kills_a_hog(mechanism: str) -> None:
    guard = guard_for(mechanism)
    limit = 100 * MiB
    limits = Limits(memory_bytes=limit)
    over: list[int] = []

    def kill(pid: int, rss: int) -> None:
        over.append(rss)
        os.killpg(pid, signal.SIGKILL)

    key = f"test-run/hog/{mechanism}/{os.getpid()}"
    with Sampler() as sampler:
        proc = subprocess.Popen([PY, "-c", HOG], start_new_session=True, stdout=subprocess.PIPE)
        guard.start(key, limit, proc.pid)
        sampler.watch(proc.pid, guard.sampler_limit(limit), kill)
        out, _ = proc.communicate(timeout=60)
        stats = sampler.unwatch(proc.pid)
    oom = guard.finish(key)
    assert b"survived" not in out
    assert proc.returncode == -signal.SIGKILL
    assert oom == (mechanism != "sampler") and bool(over) == (mechanism == "sampler")
    assert describe_failure(limits, proc.returncode, oom, bool(over), guard.mechanism) == \
        f"memory limit of 100 MiB exceeded (limits.memory, enforced by {mechanism})"
    assert stats.peak_rss_bytes < 400 * MiB  # stopped long before 1 GiB
    if mechanism != "sampler":
        base, _ = probe_memory(mechanism)
        assert base is not None and not os.path.exists(os.path.join(base, guard.cgroup_name(key)))


def alive(pid: int, wait: float = 2.0) -> bool:
    """Whether pid is still running (not gone, not a zombie) after up to `wait` seconds."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        stat = read_stat(pid)
        if stat is None or stat.state == "Z":
            return False
        time.sleep(0.02)
    return True


@pytest.mark.parametrize("mechanism", [m for m in MECHANISMS if m != "sampler"])
def test_cgroup_takes_existing_children_and_is_removed_with_escaped_ones(mechanism: str) -> None:
    guard = guard_for(mechanism)
    key = f"test-run/escape/{os.getpid()}"
    base, _ = probe_memory(mechanism)
    assert base is not None
    path = Path(base, guard.cgroup_name(key))
    proc = subprocess.Popen(["sh", "-c", "sleep 30 & setsid sleep 30 & wait"], start_new_session=True)
    try:
        time.sleep(0.2)  # the children exist before start: the race start() narrows
        guard.start(key, 64 * MiB, proc.pid)
        members = set((path / "cgroup.procs").read_text().split())
        assert str(proc.pid) in members and len(members) == 3
        os.killpg(proc.pid, signal.SIGKILL)  # what the supervisor does; the setsid sleep escapes it
        proc.wait()
        assert guard.finish(key) is False
        assert not path.exists()
        assert [pid for pid in members if alive(int(pid))] == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert guard.finish(key) is False  # a second finish is harmless


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_insisting_on_a_mechanism(mechanism: str) -> None:
    _, why = probe_memory(mechanism)
    if why is not None:
        with pytest.raises(LimitError) as err:
            MemoryGuard(mechanism)
        assert why in str(err.value)
    else:
        assert MemoryGuard(mechanism).mechanism == mechanism


def test_the_guard_picks_the_best_available_mechanism() -> None:
    guard = MemoryGuard()
    best = next(m for m in MECHANISMS if probe_memory(m)[1] is None)
    assert guard.mechanism == best
    assert set(guard.reasons) == set(MECHANISMS[:MECHANISMS.index(best)])
    assert guard.sampler_limit(MiB) == (MiB if best == "sampler" else None)


def test_cgroup_names_are_unique_and_safe() -> None:
    guard = MemoryGuard("sampler")
    a, b = guard.cgroup_name("run/1:step a"), guard.cgroup_name("run/1:step_a")
    assert a != b and "/" not in a and " " not in a and a.startswith("dagu-run_1_step")


def test_the_memory_guard_is_probed_by_the_first_step_that_asks_for_it() -> None:
    """A run whose steps set no memory limit never probes the memory cgroups (a cgroup made and
    removed at every start); the first that does gets the guard, once."""
    import selectors

    from dagu.process.spawn import Children

    selector = selectors.DefaultSelector()
    children = Children(selector, lambda: None)
    try:
        assert children._memory is None
        guard = children.memory
        assert isinstance(guard, MemoryGuard) and children.memory is guard
        assert guard.mechanism in MECHANISMS
    finally:
        children.close()
        selector.close()
