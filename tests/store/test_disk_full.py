"""Issue 16, State: a full disk is noticed within seconds, recorded with its cause, and retry works after.

The data dir is a 2 MiB tmpfs (mounted as root; the tests skip elsewhere), so a step
really fills it, as it would an SD card.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from tests.store.conftest import Env


@pytest.fixture
def small_home(env: Env) -> Iterator[Env]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(env.home)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode(errors='replace')}")
    try:
        yield env
    finally:
        subprocess.run(["umount", "-l", str(env.home)], check=False)


# Fills the data dir and keeps running, unless the test has freed the space (the marker).
FILLER = """\
    name: a
    steps:
      - id: fill
        command: sh -c 'if [ -f {mark} ]; then echo ok; else cat /dev/zero > "$DAGU_HOME/big"; sleep 300; fi'
    """


def _status(env: Env, run_id: str) -> dict:
    res = env.run("status", "a", "--run-id", run_id, "--format", "json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_a_step_that_fills_the_disk_fails_the_run_with_the_cause_and_retry_works_after(small_home: Env) -> None:
    env = small_home
    mark = env.dir / "space-freed"
    env.write("a.yaml", FILLER.format(mark=mark))

    res = env.run("start", "a.yaml", "--run-id", "d1", timeout=120)  # the step alone would sleep 300 s
    assert res.returncode == 1, res.stderr
    assert "disk is full" in res.stderr and "dagu retry a --run-id d1" in res.stderr
    assert "Traceback" not in res.stderr

    st = _status(env, "d1")
    assert st["status"] == "failed" and st["interrupted"] is False  # failed, with the reason, not "interrupted"
    assert "disk is full" in st["error"]
    fill = st["steps"]["fill"]
    assert fill["status"] == "failed" and "disk is full" in fill["reason"]
    assert "disk is full" in fill["attempts"][-1]["error"]
    assert not (env.home / "runs" / "a" / "d1" / ".space-reserve").exists()

    (env.home / "big").unlink()  # free the space, as the message asks
    mark.write_text("")
    retry = env.run("retry", "a", "--run-id", "d1", timeout=120)
    assert retry.returncode == 0, retry.stderr
    assert _status(env, "d1")["status"] == "succeeded"


def test_a_run_that_cannot_write_its_plan_leaves_nothing_to_retry(small_home: Env) -> None:
    env = small_home
    mark = env.dir / "space-freed"
    mark.write_text("")
    env.write("a.yaml", FILLER.format(mark=mark))
    big = env.home / "big"
    with open(big, "wb", buffering=0) as fh:  # fill the data dir before the run
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError:
            pass
    res = env.run("start", "a.yaml", "--run-id", "d2")
    assert res.returncode == 1 and "no space left" in res.stderr and "start it again" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (env.home / "runs" / "a" / "d2").exists()  # no half-made run whose plan is missing

    big.unlink()
    res = env.run("start", "a.yaml", "--run-id", "d2", "-q")
    assert res.returncode == 0, res.stderr
    assert _status(env, "d2")["status"] == "succeeded"


def test_the_journal_writer_keeps_events_until_a_write_succeeds(small_home: Env) -> None:
    """Store level: a failed flush leaves no partial record and keeps its events and the error."""
    from dagu.store.journal import DiskFullError, Journal

    env = small_home
    path = env.home / "journal.jsonl"
    journal = Journal(str(path))
    journal.add({"ev": "run_started", "at": 1.0})
    journal.flush()
    big = env.home / "big"
    with open(big, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
    written = path.read_bytes()
    journal.add({"ev": "run_finished", "at": 2.0, "status": "failed", "error": "x" * 20000})
    with pytest.raises(DiskFullError):
        journal.flush()
    assert path.read_bytes() == written and journal.pending == 1 and isinstance(journal.error, DiskFullError)
    big.unlink()
    journal.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["ev"] for e in lines] == ["run_started", "run_finished"] and journal.error is None
