"""Run in-process executors (router, noop; http, sql, ... later) off the supervisor's loop thread.

Each call runs on a small pool of daemon worker threads; when it returns, its
result goes on a queue and the loop is woken through its self-pipe, as for
preconditions.  The pool's threads are daemons on purpose: a `run` that ignores
its cancellation is abandoned after the grace period (the step is concluded
anyway) and must not keep the supervisor process alive at exit.  An abandoned
worker leaves the pool, so it cannot starve the steps that come after it.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from dataclasses import field
from collections.abc import Callable

from dagu.spec.records import dataclass
from dagu.executors.base import Cancellation, StepIO, StepRequest, StepResult

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    import queue
    from typing import Any

MAX_WORKERS = 8


def open_io(stdout: str, stderr: str) -> StepIO:
    """The step's log files, line-buffered, so each line is on disk as soon as it is written."""
    for path in (stdout, stderr):
        parent = os.path.dirname(path)
        if parent and not os.path.isdir(parent):
            os.makedirs(parent, exist_ok=True)
    out = open(stdout, "w", buffering=1, encoding="utf-8", errors="replace")
    err = out if stderr == stdout else open(stderr, "w", buffering=1, encoding="utf-8", errors="replace")
    return StepIO(out=out, err=err)


def close_io(io: StepIO) -> None:
    for fh in {id(io.out): io.out, id(io.err): io.err}.values():
        try:
            fh.close()
        except (OSError, ValueError):
            pass


@dataclass(eq=False)
class Ticket:
    """One call of an in-process executor: what it runs, its token, and whom it belongs to."""

    run: Callable[[StepRequest, StepIO, Cancellation], StepResult]
    request: StepRequest
    io: StepIO
    owner: Any
    cancel: Cancellation = field(default_factory=Cancellation)
    abandoned: bool = False
    returned: bool = False  # its thread is back in the pool (set under the runner's lock)


class InProcessRunner:
    """A pool of daemon threads for in-process executors; results come back through `take()`."""

    def __init__(self, wake: Callable[[], None], max_workers: int = MAX_WORKERS) -> None:
        self._wake = wake
        self._max = max_workers
        # Made by the first call: most runs have no in-process step, and `queue` is imported
        # then only (issue 17).  Results need no blocking queue: the loop alone takes them.
        self._tasks: "queue.SimpleQueue[Ticket | None] | None" = None
        self._done: deque[tuple[Ticket, StepResult | None, BaseException | None]] = deque()
        self._lock = threading.Lock()
        self._live = 0
        self._idle = 0
        self._calls = 0  # submitted and not yet returned (abandoned ones included)

    def submit(self, ticket: Ticket) -> None:
        with self._lock:
            if self._tasks is None:
                import queue

                self._tasks = queue.SimpleQueue()
            self._calls += 1
            self._tasks.put(ticket)
            if self._tasks.qsize() > self._idle and self._live < self._max:
                self._live += 1
                self._idle += 1
                threading.Thread(target=self._work, name="in-process-step", daemon=True).start()

    def _work(self) -> None:
        while True:
            ticket = self._tasks.get()
            with self._lock:
                self._idle -= 1
            if ticket is None:
                with self._lock:
                    self._live -= 1
                return
            result: StepResult | None = None
            error: BaseException | None = None
            try:
                result = ticket.run(ticket.request, ticket.io, ticket.cancel)
            except BaseException as exc:  # handed to the loop, which reports it on the step
                error = exc
            with self._lock:
                self._calls -= 1
                if ticket.abandoned:  # the step was concluded without us; this thread leaves the pool
                    return
                ticket.returned = True
                self._idle += 1
            self._done.append((ticket, result, error))
            self._wake()

    def busy(self) -> bool:
        """Whether an executor's code runs on a worker now (abandoned ones included)."""
        with self._lock:
            return self._calls > 0

    def take(self) -> list[tuple[Ticket, StepResult | None, BaseException | None]]:
        """Calls that returned since the last take (never one that was abandoned)."""
        found = []
        while self._done:
            item = self._done.popleft()
            if not item[0].abandoned:
                found.append(item)
        return found

    def abandon(self, ticket: Ticket) -> None:
        """Stop waiting for a call that ignored its cancellation; its thread is left to end alone."""
        with self._lock:
            if not ticket.abandoned:
                ticket.abandoned = True
                if not ticket.returned:
                    self._live -= 1
        close_io(ticket.io)

    def close(self) -> None:
        """Let idle workers end (busy ones are daemons and end with the process)."""
        with self._lock:
            for _ in range(self._idle if self._tasks is not None else 0):
                self._tasks.put(None)
