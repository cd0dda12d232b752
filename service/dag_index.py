"""A front end's view of a DAGs folder, compiled once and recompiled only what changed.

Why: the web UI lists every DAG on every page and API call.  Compiling 100 files per request
cost ~1 s; the API's list must answer in milliseconds.  A long-lived process (the web server,
later a worker) keeps one `DagIndex`; each entry remembers what it was compiled from (the
file, its base config, every file the plan depends on, and which workflow names the folder
held, since `call:` targets resolve against them), by size, mtime and inode.  Any change there
recompiles that one file; nothing is ever served stale, and nothing here writes.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Callable

from dagu.spec.records import dataclass

if TYPE_CHECKING:
    from dagu.service.dags import DagEntry

_YAML = (".yaml", ".yml")
_BASE_NAMES = ("base.yaml", "base.yml")


def _stat_key(path: str) -> tuple:
    try:
        st = os.stat(path)
    except OSError:
        return (path, None)
    return (path, st.st_mtime_ns, st.st_size, st.st_ino)


@dataclass
class _Compiled:
    signature: tuple
    entry: "DagEntry"


class DagIndex:
    """Compiled DAG entries by file, for one process; safe to share between request threads."""

    def __init__(self) -> None:
        self._entries: dict[str, _Compiled] = {}
        self._lock = threading.Lock()
        self._next: dict[str, tuple["DagEntry", float | None]] = {}  # file -> (entry, its next run)

    def next_run(self, entry: "DagEntry", now: float, compute: "Callable[[], float | None]") -> float | None:
        """The entry's next scheduled run, computed again only once that time has passed or the
        file was compiled again (walking cron fields costs ~0.3 ms a DAG, on every list)."""
        with self._lock:
            cached = self._next.get(entry.file)
        if cached is not None and cached[0] is entry and (cached[1] is None or cached[1] > now):
            return cached[1]
        value = compute()
        with self._lock:
            self._next[entry.file] = (entry, value)
        return value

    def entries(self, directory: str, names: list[str]) -> list["DagEntry"]:
        """The DAG entries of `directory` (its workflow file `names`, base configs excluded)."""
        listing = tuple(n for n in names if n.endswith(_YAML))
        shared = (listing, *(_stat_key(os.path.join(directory, b)) for b in _BASE_NAMES),
                  os.environ.get("DAGU_BASE_CONFIG"))
        out = []
        for name in names:
            path = os.path.join(directory, name)
            out.append(self.entry(path, shared))
        with self._lock:  # forget files that are gone
            wanted = {os.path.join(directory, n) for n in names}
            for path in [p for p in self._entries if os.path.dirname(p) == directory and p not in wanted]:
                del self._entries[path]
                self._next.pop(path, None)
        return out

    def entry(self, path: str, shared: tuple = ()) -> "DagEntry":
        with self._lock:
            cached = self._entries.get(path)
        if cached is not None and cached.signature == self._signature(path, shared, cached.entry):
            return cached.entry
        entry = _compile(path)
        signature = self._signature(path, shared, entry)
        with self._lock:
            self._entries[path] = _Compiled(signature, entry)
        return entry

    @staticmethod
    def _signature(path: str, shared: tuple, entry: "DagEntry | None") -> tuple:
        deps = sorted(entry.plan.dependencies) if entry is not None and entry.plan is not None else ()
        return (_stat_key(path), shared, *(_stat_key(d) for d in deps))


def _compile(path: str) -> "DagEntry":
    from dagu.compiler.pipeline import compile_file
    from dagu.service.dags import DagEntry

    result = compile_file(path)
    name = result.plan.root if result.plan is not None else os.path.splitext(os.path.basename(path))[0]
    return DagEntry(name, path, result.plan if result.ok else None, list(result.diagnostics))
