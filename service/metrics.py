"""What /metrics exposes, gathered through the service's own reads: runs by DAG and status,
step durations of recent runs, the scheduler's lag and missed ticks, queue lengths.

Plain data out; the web layer renders Prometheus' text format.  With a `RunIndex` (a long-lived
front end's) counting 10,000 runs costs one `stat` per run, not a read of each.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import field

from dagu.spec.records import dataclass
from dagu.service.run_index import RunIndex

RECENT_RUNS = 50  # per DAG, the runs whose step durations the histogram is made of
BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)


@dataclass
class Histogram:
    """Cumulative bucket counts (`le` bounds as BUCKETS, then +Inf), sum and count."""

    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(BUCKETS):
            if value <= bound:
                self.buckets[i] += 1
        self.buckets[-1] += 1
        self.total += value
        self.count += 1


@dataclass
class Snapshot:
    collected_at: float
    runs: dict[tuple[str, str], int]  # (dag, status) -> runs kept in the data dir
    step_seconds: dict[str, Histogram]  # dag -> durations of step attempts of its RECENT_RUNS newest runs
    scheduler_alive: bool
    scheduler_stalled: bool
    heartbeat_age: float | None  # seconds since the scheduler's last loop (None: it never beat)
    heartbeat_interval: float
    missed_ticks: dict[str, int]  # dag -> ticks due while no scheduler ran
    queues: dict[str, int]  # queue -> runs waiting


def collect(home: str, index: RunIndex | None = None, recent: int = RECENT_RUNS) -> Snapshot:
    """Everything /metrics shows, read now."""
    from dagu.service.reading import scheduler_report
    from dagu.service.runs import queue_items

    index = index or RunIndex(home)
    runs: Counter[tuple[str, str]] = Counter()
    steps: dict[str, Histogram] = {}
    for dag in index.dag_names():
        try:
            rows = index.runs(dag)
        except OSError:
            continue
        for row in rows:
            runs[(dag, row.status)] += 1
        histogram = steps[dag] = Histogram()
        for row in rows[:recent]:
            for seconds in row.step_seconds:
                histogram.observe(max(0.0, seconds))
    report = scheduler_report(home)
    missed: Counter[str] = Counter()
    for overdue in report.overdue:
        missed[overdue.dag] += overdue.count
    queues = Counter(item.queue for item in queue_items(home))
    return Snapshot(time.time(), dict(runs), steps, report.alive, report.stalled, report.age, report.interval,
                    dict(missed), dict(queues))
