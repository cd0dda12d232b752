"""How many bytes the runs of a data dir take on disk, measured with stat alone.

The size cap is checked after every run, so the common case (under the cap)
must not read any file: one `scandir` + `lstat` per entry of `runs/`, nothing
else.  Bytes are allocated blocks (`st_blocks * 512`), what `du` counts and
what fills a disk, not file lengths: a run of empty files still takes blocks.
The walk also notes each run's journal mtime, which is when its last event
(`run_finished` for a finished run) was written: the order in which the cap
removes runs, without opening a snapshot.
"""

from __future__ import annotations

import os
from dataclasses import field

from dagu.spec.records import dataclass
from dagu.store.runs import TOMBSTONE, Store, remove_tree

RunKey = tuple[str, str]  # (dag, run_id)


@dataclass
class Usage:
    """The bytes under `runs/`, in total and per run directory (sub-DAG runs counted on their own)."""

    total: int = 0
    runs: dict[RunKey, int] = field(default_factory=dict)
    journal_mtime: dict[RunKey, float] = field(default_factory=dict)
    tombstones: int = 0  # leftover deletions finished on the way


def tree_bytes(path: str) -> tuple[int, float | None]:
    """Blocks of a directory tree in bytes, and the mtime of its journal.jsonl (None if it has none)."""
    try:
        st = os.lstat(path)
    except OSError:
        return 0, None
    total = st.st_blocks * 512
    journal = None
    stack = [path]
    while stack:
        directory = stack.pop()
        try:
            entries = os.scandir(directory)
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                total += st.st_blocks * 512
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif directory == path and entry.name == "journal.jsonl":
                    journal = st.st_mtime
    return total, journal


def measure(store: Store, finish_tombstones: bool = True) -> Usage:
    """Walk `runs/` once.  Leftover tombstones are not counted, and are removed unless told not to
    (a dry run), so every pass that measures also finishes what a crash left half-deleted."""
    usage = Usage()
    try:
        st = os.lstat(store.runs)
    except FileNotFoundError:
        return usage
    usage.total = st.st_blocks * 512
    for dag in store.dag_names():
        dag_dir = store.dag_dir(dag)
        try:
            usage.total += os.lstat(dag_dir).st_blocks * 512
            entries = list(os.scandir(dag_dir))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(TOMBSTONE):  # already decided: its bytes are as good as free
                if finish_tombstones:
                    remove_tree(entry.path)
                usage.tombstones += 1
                continue
            if not entry.is_dir(follow_symlinks=False):
                try:
                    usage.total += entry.stat(follow_symlinks=False).st_blocks * 512
                except OSError:
                    pass
                continue
            size, journal = tree_bytes(entry.path)
            usage.total += size
            if not entry.name.startswith("."):  # .slots and the like count, but are not runs
                key = (dag, entry.name)
                usage.runs[key] = size
                if journal is not None:
                    usage.journal_mtime[key] = journal
    return usage
