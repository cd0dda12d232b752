"""Small waits and file readers shared by the service tests (no timing assertions: waits only)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

# A step that blocks until the test creates a file (bounded, so a failed test leaves nothing behind).
WAIT_FOR_GO = 'for i in $(seq 600); do [ -f {go} ] && break; sleep 0.1; done'


def wait(predicate: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines() if line.strip()]
