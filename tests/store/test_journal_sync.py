"""The supervisor's journal syncs behind its writes (store/journal.py, `sync_behind`).

What is checked is the order of things, which a real disk cannot show: each test
wraps os.fdatasync to record (or slow down, or fail) the real call.
"""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from pathlib import Path

import pytest

from dagu.store.journal import Journal, StoreError


def _events(path: Path) -> list[str]:
    return [json.loads(line)["ev"] for line in path.read_text().splitlines()]


def test_a_flush_is_readable_at_once_and_synced_off_the_writers_thread(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    real, synced_on, gate = os.fdatasync, [], threading.Event()

    def slow_sync(fd: int) -> None:
        gate.wait(5)
        real(fd)
        synced_on.append(threading.current_thread().name)
    monkeypatch.setattr(os, "fdatasync", slow_sync)
    path = tmp_path / "journal.jsonl"
    journal = Journal(str(path), sync_behind=True)
    journal.add({"ev": "run_started", "at": 1.0})
    started = time.monotonic()
    journal.flush()
    assert time.monotonic() - started < 1, "flush must not wait for the disk"
    assert _events(path) == ["run_started"], "the bytes are in the file (a killed writer loses nothing)"
    assert synced_on == []
    gate.set()
    journal.add({"ev": "run_finished", "at": 2.0, "status": "succeeded"})
    journal.close()
    assert synced_on and set(synced_on) == {"journal-sync"}
    assert _events(path) == ["run_started", "run_finished"]


def test_close_returns_only_when_the_last_flush_is_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real, sizes = os.fdatasync, []

    def recording_sync(fd: int) -> None:
        time.sleep(0.05)
        real(fd)
        sizes.append(os.fstat(fd).st_size)
    monkeypatch.setattr(os, "fdatasync", recording_sync)
    path = tmp_path / "journal.jsonl"
    journal = Journal(str(path), sync_behind=True)
    for n in range(20):
        journal.add({"ev": "step_started", "at": float(n), "step": f"s{n}", "attempt": 1})
        journal.flush()
    journal.close()
    assert sizes and sizes[-1] == path.stat().st_size
    assert len(sizes) <= 20, "requests made while a sync runs are served by the next one"


def test_a_failed_sync_is_raised_by_the_next_flush_and_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    failing = threading.Event()
    real = os.fdatasync

    def sync(fd: int) -> None:
        if failing.is_set():
            raise OSError(errno.EIO, "Input/output error")
        real(fd)
    monkeypatch.setattr(os, "fdatasync", sync)
    path = tmp_path / "journal.jsonl"
    journal = Journal(str(path), sync_behind=True)
    failing.set()
    journal.add({"ev": "run_started", "at": 1.0})
    journal.flush()
    with pytest.raises(StoreError, match="journal.jsonl"):
        journal.sync()
    assert isinstance(journal.error, StoreError)
    failing.clear()
    journal.add({"ev": "run_finished", "at": 2.0, "status": "failed"})
    journal.flush()
    journal.close()
    assert journal.error is None and _events(path) == ["run_started", "run_finished"]


def test_without_sync_behind_a_flush_syncs_before_it_returns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real, calls = os.fdatasync, []
    monkeypatch.setattr(os, "fdatasync", lambda fd: (calls.append(threading.current_thread().name), real(fd)))
    journal = Journal(str(tmp_path / "journal.jsonl"))
    journal.add({"ev": "run_started", "at": 1.0})
    journal.flush()
    assert calls == [threading.current_thread().name]
    journal.close()
