"""Preconditions that run commands, checked on worker threads.

A slow `test -f ...` or backtick in a precondition must not stall the
bookkeeping of the steps already running, so the supervisor hands such checks
to a small pool and is woken (through its self-pipe) when one is decided.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

from dagu.engine import conditions
from dagu.engine.evaluate import Scope
from dagu.engine.graph import Node


class PreconditionChecker:
    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake
        self._pool: ThreadPoolExecutor | None = None
        # appended by the pool's threads, taken by the loop alone: no blocking queue is needed
        self._results: deque[tuple[str, str | None, BaseException | None]] = deque()
        self.pending: dict[str, Node] = {}  # node key -> node being checked

    def submit(self, node: Node, scope: Scope) -> None:
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor  # here only: most runs have no preconditions

            self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="precondition")
        key, checks = node.key, node.step.preconditions
        self.pending[key] = node

        def work() -> None:
            try:
                self._results.append((key, conditions.unmet(checks, scope, scope.cwd, dict(scope.env)), None))
            except BaseException as exc:  # handed to the loop, which reports it on the step
                self._results.append((key, None, exc))
            self._wake()

        self._pool.submit(work)

    def take(self) -> list[tuple[Node, str | None, BaseException | None]]:
        """Checks decided since the last call: (node, what is unmet or None, error)."""
        found = []
        while self._results:
            key, unmet, exc = self._results.popleft()
            found.append((self.pending.pop(key), unmet, exc))
        return found

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
