"""Reading runs: status with the sub-run tree, history with missed ticks, step logs.

Everything here is side-effect free: a run whose supervisor died is *reported*
interrupted (`RunView.dead`), never repaired by a reader (see store/runs.py).
"""

from __future__ import annotations

import os
import time
from dataclasses import field
from typing import Any, Union

from dagu.spec.records import dataclass
from dagu.process.tree import describe_leftovers
from dagu.service import ServiceError
from dagu.store.runs import RunView, Store

STDOUT, STDERR = "stdout", "stderr"
SUB_RUN_DEPTH = 50


@dataclass
class SubRun:
    """A sub-DAG run started by a step of its parent (latest attempt of each step)."""

    step: str
    dag: str
    run_id: str
    status: str  # the child's status, or "missing" when its folder is gone
    runs: list["SubRun"] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "dag": self.dag, "run_id": self.run_id, "status": self.status,
                "runs": [r.to_dict() for r in self.runs]}


@dataclass
class RunReport:
    """One run as a status page shows it: the view (status, problems, live) and its sub-runs."""

    view: RunView
    sub_runs: list[SubRun]
    worker: str | None = None  # the distributed worker that ran it; None: this host

    def to_dict(self) -> dict[str, Any]:
        """The `dagu status --format json` document (and the web API's)."""
        return {**self.view.status.to_dict(), "path": self.view.path, "live": self.view.live,
                "problems": self.view.problems, "sub_runs": [r.to_dict() for r in self.sub_runs],
                **({"worker": self.worker} if self.worker else {})}


@dataclass
class LogFile:
    """One attempt's log of one step."""

    step: str
    handler: str | None
    attempt: int
    stream: str
    path: str

    @property
    def label(self) -> str:
        return f"{'handler ' + self.handler if self.handler else self.step} (attempt {self.attempt})"


@dataclass
class LogChunk:
    """Bytes of a log from `offset`; `next_offset` is where the next read continues."""

    path: str
    offset: int
    data: bytes
    next_offset: int
    size: int  # the file's size when read


def run_view(home: str, dag: str, run_id: str | None = None) -> RunView:
    """A run by id, or the DAG's latest run."""
    store = Store(home)
    if run_id is None:
        view = store.latest(dag)
        if view is None:
            raise ServiceError(f"no runs of {dag!r} under {store.runs}")
        return view
    run = store.run(dag, run_id)
    if not os.path.isdir(run.path):
        raise ServiceError(f"no run {run_id!r} of {dag!r} under {store.runs}")
    return run.read()


def sub_runs(home: str, view: RunView, depth: int = 0) -> list[SubRun]:
    """The tree of sub-DAG runs started by this run's steps."""
    store = Store(home)
    out = []
    status = view.status
    for state in [*status.steps.values(), *status.handlers.values()]:
        last = state.last
        for dag, run_id in (last.children or []) if last is not None else []:
            child = store.run(dag, run_id).read() if store.exists(dag, run_id) else None
            out.append(SubRun(state.id, dag, run_id, child.status.status if child else "missing",
                              sub_runs(home, child, depth + 1) if child is not None and depth < SUB_RUN_DEPTH
                              else []))
    return out


def status(home: str, dag: str, run_id: str | None = None) -> RunReport:
    """A run (default: the latest) with its sub-run tree."""
    view = run_view(home, dag, run_id)
    view.problems += describe_leftovers(view)  # process/tree.py: does the dead run still run?
    from dagu.distributed.records import read_claim  # one stat when the run was not sent to a worker

    claim = read_claim(home, view.status.dag, view.status.run_id)
    return RunReport(view, sub_runs(home, view), worker=str(claim["worker"]) if claim else None)


def compile_warning(home: str, file: str, dag: str) -> str | None:
    """One line when the scheduler runs an older plan of this file than the file says."""
    from dagu.schedule.status import compile_warning as warning

    return warning(home, file, dag)


def scheduler_report(home: str):
    """`dagu status --scheduler`: alive or not, next ticks, files that do not compile."""
    from dagu.schedule.status import scheduler_report as report

    return report(home, time.time())


@dataclass
class HistoryRun:
    """A run in a DAG's history."""

    view: RunView

    def to_dict(self) -> dict[str, Any]:
        st = self.view.status
        return {"run_id": st.run_id, "status": st.status, "started_at": st.started_at,
                "finished_at": st.finished_at,
                "duration_sec": (st.finished_at - st.started_at) if st.finished_at and st.started_at else None,
                "params": st.params, "interrupted": st.interrupted, "problems": self.view.problems,
                "path": self.view.path}


HistoryRow = Union[HistoryRun, Any]  # Any: schedule.tick_history.TickRow (a tick that became no run)


def history(home: str, dag: str, limit: int | None = None) -> list[HistoryRow]:
    """The DAG's runs and the ticks that did not become runs, newest first."""
    from dagu.schedule.tick_history import TickRow, merge, tick_rows

    items = merge(Store(home).views(dag), tick_rows(home, dag, time.time()))
    if limit is not None:
        items = items[:limit]
    return [item if isinstance(item, TickRow) else HistoryRun(item) for item in items]


def log_files(view: RunView, step: str | None = None, stream: str = STDOUT) -> list[LogFile]:
    """The run's log files in step order (every attempt), or one step's."""
    status = view.status
    if step is not None and step not in status.steps and not any(h.id == step for h in status.handlers.values()):
        raise ServiceError(f"run {status.run_id} has no step {step!r} (steps: {', '.join(status.steps)})")
    out = []
    for s in [*status.steps.values(), *status.handlers.values()]:
        if step is not None and s.id != step:
            continue
        for a in s.attempts:
            path = a.stderr if stream == STDERR else a.stdout
            if path:
                out.append(LogFile(s.id, s.handler, a.number, stream, path))
    return out


def _step_log(home: str, dag: str, run_id: str | None, step: str, stream: str) -> str:
    if stream not in (STDOUT, STDERR):
        raise ServiceError(f"stream {stream!r}: stdout or stderr")
    files = log_files(run_view(home, dag, run_id), step, stream)
    if not files:
        raise ServiceError(f"step {step!r} has no {stream} log yet")
    return files[-1].path  # the latest attempt


def read_chunk(path: str, offset: int = 0, limit: int | None = None) -> LogChunk:
    """Bytes of a file from `offset` (at most `limit`); an unreadable file reads as empty."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            fh.seek(offset)
            data = fh.read() if limit is None else fh.read(limit)
    except OSError:
        return LogChunk(path, offset, b"", offset, 0)
    return LogChunk(path, offset, data, offset + len(data), size)


def read_log(home: str, dag: str, run_id: str | None, step: str, stream: str = STDOUT, offset: int = 0,
             limit: int | None = None) -> LogChunk:
    """A step's log (its latest attempt) from a byte offset: a follower keeps `next_offset`."""
    if offset < 0:
        raise ServiceError(f"offset {offset}: must not be negative")
    return read_chunk(_step_log(home, dag, run_id, step, stream), offset, limit)


def tail(home: str, dag: str, run_id: str | None, step: str, stream: str = STDOUT,
         limit: int = 64 * 1024) -> LogChunk:
    """The last `limit` bytes of a step's log (its latest attempt)."""
    path = _step_log(home, dag, run_id, step, stream)
    try:
        size = os.stat(path).st_size
    except OSError:
        size = 0
    return read_chunk(path, max(0, size - limit), limit)
