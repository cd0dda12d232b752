"""The one way to watch a run: subscribe to its events.

The supervisor's step loop knows nothing about the journal, notifications,
the scheduler or the web UI; it emits events (the same dicts the journal
stores, see spec/state-format.md) to every subscriber.  The journal is just
the first subscriber.
"""

from __future__ import annotations

from dagu.engine.secrets import Masker
from dagu.store.runs import Journal
from dagu.store.state import RunStatus, apply

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any, Protocol
else:
    Protocol = object  # the protocols here are for type checkers: at run time, plain classes


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
    """The essential subscriber: events into the run's journal, folded into the live status.

    With secrets, every event is masked before it is written (so the journal, status.json and
    every later subscriber see `*****`), and an attempt's log files are masked when it ends."""

    def __init__(self, journal: Journal, status: RunStatus, masker: Masker | None = None) -> None:
        self.journal = journal
        self.status = status
        self.masker = masker or Masker()
        self._logs: dict[tuple[Any, Any, Any], tuple[str, ...]] = {}  # attempt -> its log files

    def event(self, event: dict[str, Any]) -> None:
        if self.masker:
            self._mask_logs(event)
            event.update(self.masker.data(event))
        apply(self.status, self.journal.add(event))

    def _mask_logs(self, event: dict[str, Any]) -> None:
        key = (event.get("step"), event.get("handler"), event.get("attempt"))
        if event.get("ev") == "step_started":
            self._logs[key] = tuple(p for p in (event.get("stdout"), event.get("stderr")) if p)
        elif event.get("ev") == "step_finished":
            for path in self._logs.pop(key, ()):
                try:
                    self.masker.file(path)
                except OSError:
                    pass  # a log that cannot be rewritten (gone, disk full) is reported by its reader

    def flush(self) -> None:
        self.journal.flush()
