"""The one way to watch a run: subscribe to its events.

The supervisor's step loop knows nothing about the journal, notifications,
the scheduler or the web UI; it emits events (the same dicts the journal
stores, see spec/state-format.md) to every subscriber.  The journal is just
the first subscriber.
"""

from __future__ import annotations

from typing import Any, Protocol

from dagu.store.runs import Journal
from dagu.store.state import RunStatus, apply


class RunHook(Protocol):
    def event(self, event: dict[str, Any]) -> None:
        """Called for every state change, in order, in the supervisor's thread."""

    def flush(self) -> None:
        """Called before the supervisor blocks: make buffered events durable or visible."""


class Hooks:
    """Fan events out to subscribers; a failing non-essential subscriber does not stop the run."""

    def __init__(self, essential: RunHook) -> None:
        self._essential = essential  # the journal: if it fails, the run must stop
        self._others: list[RunHook] = []

    def subscribe(self, hook: RunHook) -> None:
        self._others.append(hook)

    def event(self, event: dict[str, Any]) -> None:
        self._essential.event(event)
        for hook in self._others:
            try:
                hook.event(event)
            except Exception:  # a broken observer must not break the run
                pass

    def flush(self) -> None:
        self._essential.flush()
        for hook in self._others:
            try:
                hook.flush()
            except Exception:
                pass


class JournalHook:
    """The essential subscriber: events into the run's journal, folded into the live status."""

    def __init__(self, journal: Journal, status: RunStatus) -> None:
        self.journal = journal
        self.status = status

    def event(self, event: dict[str, Any]) -> None:
        apply(self.status, self.journal.add(event))

    def flush(self) -> None:
        self.journal.flush()
