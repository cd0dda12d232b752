"""Cheap change detection for live views: a fingerprint per topic, from `stat` calls only.

A live page (the web UI's event stream, or its polling fallback) names topics:

- `dags`: the DAG files, the runs folders and the newest runs' journals of every DAG;
- `dag:NAME`: one DAG's file and its newest runs;
- `run:DAG/RUN_ID`: one run's journal and snapshot (every status change appends to the journal);
- `logs:DAG/RUN_ID`: the sizes of one run's log files (a step writing output);
- `queues`: the queue folders;
- `system`: the scheduler's heartbeat and lock;
- `workers`: the distributed workers' records (each rewritten on every heartbeat).

A fingerprint changes when what the topic shows may have changed; it is never the content, so
watching costs a few stats per topic however large the runs are.  Names are checked as every
other read checks them: a topic naming `../x` is refused with BadName.
"""

from __future__ import annotations

import os
import time
from typing import Iterable

from dagu.spec.names import check_dag_name, check_run_id
from dagu.store.runs import Store

NEWEST_RUNS = 3  # per DAG, the runs whose journals the `dags` topic watches
RESCAN_SEC = 1.0  # a watcher looks for the newest runs again at least this often
TOPIC_KINDS = ("dags", "dag", "run", "logs", "queues", "system", "workers")


class BadTopic(ValueError):
    """A topic this module does not know, or one missing its name."""


def _stat(path: str) -> tuple:
    try:
        st = os.stat(path)
    except OSError:
        return (0,)
    return (st.st_mtime_ns, st.st_size)


def _listing(path: str) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as it:
            return list(it)
    except OSError:
        return []


def _newest_runs(run_folders: str, count: int = NEWEST_RUNS) -> list[str]:
    """The run folders last created (by their change time), newest first."""
    entries = []
    for entry in _listing(run_folders):
        if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            entries.append((entry.stat(follow_symlinks=False).st_ctime_ns, entry.path))
        except OSError:
            continue
    return [path for _t, path in sorted(entries, reverse=True)[:count]]


def _dag_state(store: Store, dag: str, memo: "dict | None" = None) -> tuple:
    folder = store.dag_dir(dag)
    return (_stat(folder), *(_stat(os.path.join(run, "journal.jsonl")) for run in _newest(folder, memo)))


def _newest(folder: str, memo: "dict | None") -> list[str]:
    """`_newest_runs(folder)`, with a watcher's `memo` reused while the folder is unchanged for at
    most RESCAN_SEC: finding the newest runs stats every run folder (10,000 stats for `dags` over
    10,000 runs, 4 times a second), while a new run changes the folder itself.  A run that is not
    new but changed (a retry) shows within RESCAN_SEC; the newest runs' journals are stat'ed at
    every look."""
    if memo is None:
        return _newest_runs(folder)
    now = time.monotonic()
    key = _stat(folder)
    hit = memo.get(folder)
    if hit is not None and hit[0] == key and now - hit[1] < RESCAN_SEC and time.time() - key[0] / 1e9 > RESCAN_SEC:
        return hit[2]
    newest = _newest_runs(folder)
    memo[folder] = (key, now, newest)
    return newest


def _dags_state(store: Store, dags_dir: str, memo: "dict | None" = None) -> tuple:
    files = tuple((e.name, _stat(e.path)) for e in _listing(dags_dir) if e.name.endswith((".yaml", ".yml")))
    runs = tuple((e.name, _dag_state(store, e.name, memo)) for e in _listing(store.runs)
                 if not e.name.startswith(".") and e.is_dir(follow_symlinks=False) and _is_dag_name(e.name))
    return (_stat(dags_dir), files, _stat(store.runs), runs)


def _is_dag_name(name: str) -> bool:
    try:
        check_dag_name(name)
    except ValueError:
        return False
    return True


def _split_run(name: str) -> tuple[str, str]:
    dag, sep, run_id = name.partition("/")
    if not sep:
        raise BadTopic(f"{name!r}: give DAG/RUN_ID")
    return check_dag_name(dag), check_run_id(run_id)


def fingerprint(home: str, dags_dir: str, topic: str, memo: "dict | None" = None) -> str:
    """A short text that changes when what `topic` shows may have changed.  A long-lived watcher
    passes its own `memo` dict (see `_newest`)."""
    store = Store(home)
    kind, _sep, name = topic.partition(":")
    if kind == "dags":
        state: tuple = _dags_state(store, dags_dir, memo)
    elif kind == "dag":
        state = (_stat(dags_dir), _dag_state(store, check_dag_name(name), memo))
    elif kind in ("run", "logs"):
        run = store.run(*_split_run(name))
        if kind == "run":
            state = (_stat(run.path), _stat(os.path.join(run.path, "journal.jsonl")))
        else:
            logs = os.path.join(run.path, "logs")
            state = (_stat(logs), tuple((e.name, _stat(e.path)) for e in _listing(logs)))
    elif kind == "queues":
        root = os.path.join(home, "queue")
        state = (_stat(root), tuple((e.name, _stat(e.path)) for e in _listing(root)))
    elif kind == "system":
        root = os.path.join(home, "scheduler")
        state = tuple((e.name, _stat(e.path)) for e in _listing(root))
    elif kind == "workers":
        root = os.path.join(home, "distributed", "workers")
        state = tuple((e.name, _stat(e.path)) for e in _listing(root) if e.name.endswith(".json"))
    else:
        raise BadTopic(f"unknown topic {topic!r} (topics: {', '.join(TOPIC_KINDS)})")
    return format(hash(state) & 0xFFFFFFFFFFFF, "x")


def check_topics(topics: Iterable[str]) -> list[str]:
    """The topics, each checked (BadTopic/BadName) before anything watches it."""
    out = []
    for topic in topics:
        kind, _sep, name = topic.partition(":")
        if kind not in TOPIC_KINDS:
            raise BadTopic(f"unknown topic {topic!r} (topics: {', '.join(TOPIC_KINDS)})")
        if kind in ("run", "logs"):
            _split_run(name)
        elif kind == "dag":
            check_dag_name(name)
        out.append(topic)
    return out
