"""The scheduler's own durable state under $DAGU_HOME/scheduler/.

    progress/<dag>.json   {"format": 1, "dag": ..., "handled_until": T}: every tick of the DAG
                          at or before T was handled (run, queued, skipped or recorded as
                          missed); written atomically (temp, fsync, rename, fsync of the dir)
    ticks.jsonl           one JSON line per decision about a tick, appended and fsync'd (past
                          8 MiB it becomes ticks.jsonl.1, replacing the one before):
                          {"at", "dag", "tick", "tick_utc", "kind": start|stop|restart,
                           "action": started|queued|skipped|missed|stopped|restarted|exists|failed,
                           "reason", "run_id"}; a range of missed ticks is one line with
                          "count" and "last_tick"
    plans/<dag>.plan.json the last plan that compiled, which the runs it starts execute
    leader.lock           flock'd by the active scheduler; content = its pid
    heartbeat.json        its last loop, next tick per DAG, files that do not compile
                          (written by scheduler.write_heartbeat, read by scheduler_status.py)

A restart reads `handled_until`, so it neither repeats a tick nor forgets one.
Run ids are `<dag>-<tick>` (see cron.stamp), so even a tick handled again after
a crash between starting the run and writing progress finds the run and does
not start it twice.
"""

from __future__ import annotations

import json
import os
from typing import Any

from dagu.store.runs import _storage_error, append_synced, rotate_if_large, write_atomic

FORMAT = 1
ROTATE_BYTES = 8 << 20  # ticks.jsonl moves to ticks.jsonl.1 past this: 100 DAGs a minute write ~30 MB a day


class Progress:
    """Per DAG, the instant up to which its ticks were handled."""

    def __init__(self, root: str) -> None:
        self.dir = os.path.join(root, "progress")

    def _path(self, dag: str) -> str:
        return os.path.join(self.dir, f"{dag}.json")

    def get(self, dag: str) -> tuple[float | None, str | None]:
        """(handled_until or None, a problem with the file or None)."""
        path = self._path(dag)
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
            return float(data["handled_until"]), None
        except FileNotFoundError:
            return None, None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return None, f"{path}: unreadable progress ({exc}); starting from now"

    def set(self, dag: str, handled_until: float) -> None:
        os.makedirs(self.dir, exist_ok=True)
        write_atomic(self._path(dag), json.dumps(
            {"format": FORMAT, "dag": dag, "handled_until": handled_until}) + "\n")


class TickJournal:
    """Append-only record of what the scheduler decided about each tick."""

    def __init__(self, root: str) -> None:
        self.path = os.path.join(root, "ticks.jsonl")
        self.pending: list[bytes] = []

    def add(self, record: dict[str, Any]) -> None:
        """Buffered until `flush`: a turn that starts 100 runs writes its records with one fsync."""
        self.pending.append((json.dumps(record, sort_keys=True) + "\n").encode("utf-8"))

    def flush(self) -> None:
        if not self.pending:
            return
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        try:
            rotate_if_large(self.path, ROTATE_BYTES)
            append_synced(self.path, b"".join(self.pending))
        except OSError as exc:
            raise _storage_error(self.path, exc) from None
        self.pending.clear()

    def read(self) -> list[dict[str, Any]]:
        """Every complete record (a torn last line is ignored)."""
        out = []
        for path in (self.path + ".1", self.path):  # the rotated-out older records first
            try:
                with open(path, encoding="utf-8") as fh:
                    for line in fh:
                        try:
                            out.append(json.loads(line))
                        except ValueError:
                            continue
            except FileNotFoundError:
                pass
        return out
