"""What every request of one app shares: the data dir, the DAGs folder, and the launcher that
starts detached supervisors (web requests never supervise a run themselves)."""

from __future__ import annotations

import threading
from dataclasses import field
from typing import Any

from flask import current_app

from dagu.spec.records import dataclass
from dagu.service.dag_index import DagIndex
from dagu.service.overview import DagsFolder
from dagu.service.run_index import RunIndex


@dataclass
class WebContext:
    home: str
    dags_dir: str
    environ: dict[str, str]
    _launcher: Any = None
    _launched: list = field(default_factory=list)  # supervisor processes this server spawned
    _lock: threading.Lock = field(default_factory=threading.Lock)
    index: DagIndex = field(default_factory=DagIndex)  # compiled DAG files, recompiled when changed
    runs: RunIndex | None = None  # run rows read so far, re-read when their journal changes
    summaries: dict = field(default_factory=dict)  # the DAG list's last summaries (overview.dag_summary)

    def __post_init__(self) -> None:
        if self.runs is None:
            self.runs = RunIndex(self.home)

    @property
    def folder(self) -> DagsFolder:
        return DagsFolder(self.home, self.dags_dir, self.index, self.runs, self.summaries)

    def warm(self) -> None:
        """Compile the DAG files and read every run once (the DAG index and the run index), so
        the first person to open the DAGs page does not wait for it: ~5 s over 10,000 runs.
        For a server's background thread; a failure here is met again, and reported, by the
        first request."""
        from dagu.service.overview import dag_summaries

        try:
            dag_summaries(self.folder)
        except Exception:  # noqa: BLE001 - see above
            pass

    def launcher(self) -> Any:
        """The service's launcher, made on first use: local (spawns; no zygote in a web server), or
        routing a DAG with a worker_selector to the workers when DAGU_BROKER is set."""
        from dagu.service.launching import run_launcher

        with self._lock:
            if self._launcher is None:
                self._launcher = run_launcher(self.home, self.environ)
            return self._launcher

    def launched(self, process: Any) -> None:
        """Remember a supervisor this server spawned, so it is reaped once it ends (no zombies)."""
        if process is None:
            return
        with self._lock:
            self._launched.append(process)
        self.reap()

    def reap(self) -> None:
        with self._lock:
            self._launched = [p for p in self._launched if p.poll() is None]


def web_context() -> WebContext:
    """The current app's context."""
    return current_app.extensions["dagu"]
