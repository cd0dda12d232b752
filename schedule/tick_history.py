"""`dagu history`: the runs of a DAG and, merged in, the ticks that did not become runs.

A tick the scheduler recorded as missed or whose launch failed (ticks.jsonl)
has no run directory, so the run list alone would show nothing where a run
should be.  Those become rows with status `missed` / `launch-failed`, at the
tick's time.  A record that names a run that exists is left out: that run is
listed itself (missed ticks may be recorded as runs with status "missed").
When no scheduler is alive, the ticks due since it stopped are added as one
`missed` row per kind with reason "no scheduler is running".
"""

from __future__ import annotations

import os
from typing import Any, Sequence, Union

from dagu.spec.records import dataclass
from dagu.schedule.state import TickJournal
from dagu.schedule.status import lock_held, overdue_ticks, scheduler_root, utc_text
from dagu.store.runs import RunView, Store

STATUS_OF_ACTION = {"missed": "missed", "failed": "launch-failed"}


@dataclass
class TickRow:
    """A tick that did not become a run, shown among the runs."""

    dag: str
    status: str  # missed | launch-failed
    kind: str
    tick: float
    last_tick: float | None
    count: int
    reason: str
    run_id: str | None = None

    def note(self) -> str:
        what = "tick" if self.count == 1 else "ticks"
        when = utc_text(self.tick) + (f" .. {utc_text(self.last_tick)}"
                                      if self.last_tick is not None and self.count > 1 else "")
        return f"{self.count} {self.kind} {what} {when}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        """Shaped like a run row of `dagu history --format json`, plus the tick's own fields."""
        return {"run_id": self.run_id, "status": self.status, "started_at": self.tick, "finished_at": None,
                "duration_sec": None, "params": [], "interrupted": False, "problems": [], "path": None,
                "source": "scheduler", "kind": self.kind, "tick": self.tick, "tick_utc": utc_text(self.tick),
                "last_tick": self.last_tick, "count": self.count, "reason": self.reason}


HistoryItem = Union[RunView, TickRow]


def tick_rows(home: str, dag: str, now: float) -> list[TickRow]:
    """The DAG's missed and failed ticks, plus those overdue when no scheduler is alive."""
    root = scheduler_root(home)
    store = Store(home)
    rows = []
    for r in TickJournal(root).read():
        status = STATUS_OF_ACTION.get(r.get("action"))
        if r.get("dag") != dag or status is None or not isinstance(r.get("tick"), (int, float)):
            continue
        run_id = r.get("run_id")
        if run_id and store.exists(dag, str(run_id)):
            continue  # the run is listed itself
        rows.append(TickRow(dag, status, str(r.get("kind", "start")), float(r["tick"]), r.get("last_tick"),
                            int(r.get("count") or 1), str(r.get("reason") or ""), run_id))
    if not lock_held(os.path.join(root, "leader.lock")):
        for o in overdue_ticks(home, now, dags=[dag]):
            rows.append(TickRow(dag, "missed", o.kind, o.first, o.last, o.count,
                                "no scheduler is running" + (f" (at least {o.count})" if o.capped else "")))
    return rows


def merge(views: Sequence[RunView], rows: Sequence[TickRow]) -> list[HistoryItem]:
    """Runs and tick rows, newest first (a run by its start, a tick row by its tick)."""
    def when(item: HistoryItem) -> float:
        return item.tick if isinstance(item, TickRow) else (item.status.started_at or 0.0)

    return sorted([*views, *rows], key=when, reverse=True)
