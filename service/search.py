"""The command palette's search (⌘K / Ctrl-K in the web UI): DAGs by a fuzzy match on their names,
and runs by their ids, best first.

Fuzzy means the query's letters appear in the name in order (`etl` finds `extract_transform_load`
and `nightly-etl`); a whole-substring match, a match at the start or at word starts, and a short
name rank higher, so the name the user is typing comes first.  `hello/h1` or `hello h1` narrows
run ids to DAGs matching `hello`.  Run ids are read from the runs folders' listings (no status is
read, and a name is checked only when it is about to be shown) and only the hits shown get their
status, so a keystroke costs one directory listing per DAG and a string match per run.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from dagu.spec.records import dataclass
from dagu.service.dags import list_dags
from dagu.spec.names import run_id_problem
from dagu.store.runs import Store

if TYPE_CHECKING:
    from dagu.service.overview import DagsFolder

LIMIT = 8  # hits of each kind
MAX_QUERY = 200
SEPARATORS = "-_./: "


@dataclass(frozen=True)
class Match:
    """How well a query matches a text, and which characters matched (for highlighting)."""

    score: float
    positions: tuple[int, ...]


def _word_start(text: str, i: int) -> bool:
    return i == 0 or text[i - 1] in SEPARATORS or (text[i].isupper() and text[i - 1].islower())


def _word_start_at(text: str, low: str, ch: str, start: int) -> int | None:
    """The first occurrence of `ch` at or after `start` that begins a word."""
    j = low.find(ch, start)
    while j >= 0:
        if _word_start(text, j):
            return j
        j = low.find(ch, j + 1)
    return None


def _is_subsequence(q: str, low: str, start: int) -> bool:
    for ch in q:
        start = low.find(ch, start)
        if start < 0:
            return False
        start += 1
    return True


def fuzzy(query: str, text: str) -> Match | None:
    """None unless every character of `query` occurs in `text` in order (ignoring case)."""
    if not query:
        return Match(0.0, ())
    low, q = text.lower(), query.lower()
    at = low.find(q)
    if at >= 0:  # a substring: best, and better at the start or at a word start
        bonus = 30 if at == 0 else 15 if _word_start(text, at) else 0
        return Match(100 + bonus + 10 * len(q) - 0.1 * len(text), tuple(range(at, at + len(q))))
    positions: list[int] = []
    score = 0.0
    i = 0
    for n, ch in enumerate(q):
        j = low.find(ch, i)
        if j < 0:
            return None
        k = _word_start_at(text, low, ch, j)
        if k is not None and _is_subsequence(q[n + 1:], low, k + 1) and not (positions and j == positions[-1] + 1):
            j = k  # `etl` in extract_transform_load: the t of transform, not the t of extract
        if positions and j == positions[-1] + 1:
            score += 6
        elif _word_start(text, j):
            score += 8
        else:
            score -= min(j - i, 5)
        positions.append(j)
        i = j + 1
    if positions[0] == 0:
        score += 10
    return Match(score - 0.1 * len(text), tuple(positions))


def _split(query: str) -> tuple[str, str | None]:
    """`dag/run` or `dag run` -> ("dag", "run"); a single word is matched against both kinds."""
    for sep in ("/", " "):
        if sep in query:
            dag, _sep, run = query.partition(sep)
            return dag.strip(), run.strip()
    return query, None


def search(folder: "DagsFolder", query: str, limit: int = LIMIT) -> dict[str, Any]:
    """The best DAGs and runs for `query`: {"query", "dags": [...], "runs": [...]}, best first.

    An empty query lists the first DAGs by name and no runs."""
    query = " ".join(query.split())[:MAX_QUERY]
    dag_q, run_q = _split(query)
    entries = list_dags(folder.dags_dir, folder.index) if os.path.isdir(folder.dags_dir) else []
    dag_hits = []
    for entry in entries:
        m = fuzzy(dag_q, entry.name)
        if m is None:
            continue
        dag = entry.plan.dags[entry.plan.root] if entry.plan is not None else None
        dag_hits.append((-m.score, entry.name, {
            "name": entry.name, "ok": entry.plan is not None, "positions": list(m.positions),
            "description": dag.description if dag else None, "tags": list(dag.tags) if dag else []}))
    dag_hits.sort(key=lambda h: (h[0], h[1]))
    if run_q is None:  # one word: DAG names and run ids alike
        dags, runs = dag_hits, _run_hits(folder.home, None, query, limit) if query else []
    else:  # `dag/run`: runs of the matching DAGs (all of them while the run part is empty)
        dags, runs = (dag_hits if not run_q else []), _run_hits(folder.home, dag_q, run_q, limit)
    return {"query": query, "dags": [h[2] for h in dags[:limit]], "runs": runs}


def _folder_names(path: str) -> list[str]:
    """The names of the directories in `path` (not symlinks, not dot-names), unchecked."""
    try:
        with os.scandir(path) as it:
            return [e.name for e in it if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def _run_hits(home: str, dag_q: str | None, run_q: str, limit: int) -> list[dict[str, Any]]:
    """Runs whose id matches `run_q` (of DAGs matching `dag_q`, when given), with their status."""
    store = Store(home)
    scored = []
    for dag in store.dag_names():
        dag_match = fuzzy(dag_q, dag) if dag_q else Match(0.0, ())
        if dag_match is None:
            continue
        for run_id in _folder_names(store.dag_dir(dag)):
            m = fuzzy(run_q, run_id)
            if m is not None:
                scored.append((m.score + dag_match.score, run_id, dag, m))
    # best score first; among equals the larger id, which for generated ids is the newer run
    scored.sort(key=lambda s: (s[0], s[1]), reverse=True)
    out = []
    for _score, run_id, dag, m in scored:
        if len(out) >= limit:
            break
        if run_id_problem(run_id) is not None:  # checked only for the hits shown: it costs more than the match
            continue
        view = store.run(dag, run_id).read()
        out.append({"dag": dag, "run_id": run_id, "status": view.status.status,
                    "started_at": view.status.started_at, "positions": list(m.positions)})
    return out
