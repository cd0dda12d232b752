"""Deleting old runs on request (`dagu cleanup`; the web's "delete history" later).

Retention after every run is the engine's job (engine/runner.py); this is the
same policy (store/retention.py) applied now, by age, count or total size.
"""

from __future__ import annotations

from dagu.service import ServiceError
from dagu.store import retention
from dagu.store.runs import Store, StoreError

LOG_FILE = retention.LOG_FILE


def cleanup(home: str, dag: str | None, retention_days: float | None, retention_runs: int | None,
            max_size: int | None, dry_run: bool) -> retention.Report:
    """A DAG's age/count limits (with `dag`) and/or the data dir's size cap; what was (or would be) deleted."""
    store = Store(home)
    report = retention.Report()
    try:
        if dag is not None and (retention_days is not None or retention_runs is not None):
            retention.expire_dag(store, dag, retention_days, retention_runs, dry_run=dry_run, report=report)
        if max_size is not None:
            retention.cap_size(store, max_size, dry_run=dry_run, report=report)
    except (OSError, StoreError) as exc:
        raise ServiceError(f"cleanup stopped after {len(report.removed)} run(s): {exc}") from None
    return report
