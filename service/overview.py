"""Reads that a dashboard needs and a terminal does not: every DAG with its recent runs, one DAG as a
graph with its source and history, the data dir's size.  Plain dicts out, ready for JSON.

The web UI calls these (web/ never reads run folders or workflow files itself); they build on
`dags` (compile, find by name) and `reading` (status, history), and add nothing that writes.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from dagu.spec.records import dataclass
from dagu.schedule.words import describe
from dagu.service import ServiceError
from dagu.service.dags import DagEntry, list_dags
from dagu.spec.names import check_dag_name
from dagu.store.runs import Store

if TYPE_CHECKING:
    from dagu.service.dag_index import DagIndex
    from dagu.service.run_index import RunIndex
    from dagu.spec.plan import Dag

RECENT_RUNS = 20


@dataclass
class DagsFolder:
    """Where a front end's DAG files and runs live."""

    home: str
    dags_dir: str
    index: "DagIndex | None" = None  # a long-lived front end's compiled files (service/dag_index.py)
    runs: "RunIndex | None" = None  # and its runs read so far (service/run_index.py)
    memo: "dict | None" = None  # and its last DAG summaries (see `dag_summary`)


def diagnostic_dict(diag: Any) -> dict[str, Any]:
    """A compiler diagnostic as JSON (the located form the CLI prints, field by field)."""
    return {"file": diag.file, "line": diag.line, "col": diag.col, "severity": diag.severity,
            "code": diag.code, "message": diag.message, "notes": list(diag.notes),
            "source_line": diag.source_line}


def next_run(dag: "Dag", now: float | None = None) -> float | None:
    """The next time one of the DAG's start schedules fires (None: not scheduled)."""
    from dagu.schedule.cron import next_fire

    now = time.time() if now is None else now
    times = [t for t in (next_fire(entry, now) for entry in dag.schedule.start) if t is not None]
    return min(times) if times else None


def recent_runs(home: str, dag: str, limit: int = RECENT_RUNS,
                index: "RunIndex | None" = None) -> list[dict[str, Any]]:
    """The DAG's newest runs, newest first: id, status, start, end (no tick rows: runs only).
    With `index` (a long-lived front end's), only runs that changed are read again."""
    if index is not None:
        try:
            return [row.to_dict() for row in index.recent(dag, limit)]
        except OSError:
            return []
    store = Store(home)
    try:
        views = store.views(dag)[:limit]
    except OSError:
        return []
    return [{"run_id": v.status.run_id, "status": v.status.status, "started_at": v.status.started_at,
             "finished_at": v.status.finished_at} for v in views]


def dag_summary(home: str, entry: DagEntry, index: "RunIndex | None" = None,
                dags: "DagIndex | None" = None, memo: "dict | None" = None) -> dict[str, Any]:
    """One line of the DAGs page: name, file, tags, schedule, next run, last status, recent runs,
    or the diagnostics of a file that does not compile.

    With `memo` (a long-lived front end's dict), the same dict object is returned while the
    entry, its next run and its recent run rows are the same objects: callers must not change
    it, and may cache what they derive from it (its JSON) by its identity."""
    dag = entry.plan.dags[entry.plan.root] if entry.plan is not None else None
    upcoming = None
    if dag is not None:
        upcoming = next_run(dag) if dags is None else dags.next_run(entry, time.time(), lambda: next_run(dag))
    hit = memo.get(entry.file) if memo is not None else None
    valid = (hit is not None and hit[0][0] is entry) or _valid_name(entry.name)  # a memo holds valid names
    if index is not None and valid:
        try:
            rows: tuple = tuple(index.recent(entry.name, RECENT_RUNS))
        except OSError:
            rows = ()
        key = (entry, upcoming, rows)
        if hit is not None and hit[0] == key:  # identical objects compare at once
            return hit[1]
        runs = [row.to_dict() for row in rows]
    else:
        key, runs = None, recent_runs(home, entry.name) if valid else []
    out: dict[str, Any] = {"name": entry.name, "file": entry.file, "ok": entry.plan is not None,
                           "diagnostics": [diagnostic_dict(d) for d in entry.diagnostics]}
    if dag is not None:
        out.update(description=dag.description, tags=list(dag.tags),
                   schedule=[e.expr + (f" ({e.tz})" if e.tz else "") for e in dag.schedule.start],
                   schedule_words=[describe(e.expr) + (f" ({e.tz})" if e.tz else "") for e in dag.schedule.start],
                   next_run=upcoming)
    else:
        out.update(description=None, tags=[], schedule=[], schedule_words=[], next_run=None)
    out["runs"] = runs
    out["last_status"] = runs[0]["status"] if runs else None
    if memo is not None and key is not None:
        memo[entry.file] = (key, out)
    return out


def _valid_name(name: str) -> bool:
    try:
        check_dag_name(name)
    except Exception:  # BadName: a broken file's stem need not be a DAG name
        return False
    return True


def dag_summaries(folder: DagsFolder) -> list[dict[str, Any]]:
    """Every DAG file of the folder, summarised (see `dag_summary`)."""
    if not os.path.isdir(folder.dags_dir):
        return []
    entries = list_dags(folder.dags_dir, folder.index)
    if folder.memo is not None:
        for gone in folder.memo.keys() - {e.file for e in entries}:
            folder.memo.pop(gone, None)
    return [dag_summary(folder.home, entry, folder.runs, folder.index, folder.memo) for entry in entries]


def find_entry(folder: DagsFolder, name: str) -> DagEntry:
    """The DAG with this name in the folder; the name is checked first, so `../x` never
    reaches the file system."""
    check_dag_name(name)
    for entry in list_dags(folder.dags_dir, folder.index) if os.path.isdir(folder.dags_dir) else []:
        if entry.name == name:
            return entry
    raise NotFound(f"no DAG named {name!r} in {folder.dags_dir}")


class NotFound(ServiceError):
    """The DAG or run asked for does not exist (a front end's 404)."""


def template_text(parts: Any) -> str:
    """A plan template (a list of literal strings and expression nodes) as the user wrote it, roughly:
    `${NAME}`, `${step.field}`, backticks for a command substitution."""
    if not isinstance(parts, list):
        return str(parts)
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        elif "var" in part:
            out.append("${" + ".".join([part["var"], *map(str, part.get("path", []))]) + "}")
        elif "step" in part:
            out.append("${" + ".".join([part["step"], part.get("field", ""), *map(str, part.get("path", []))]) + "}")
        elif "cmd" in part:
            out.append("`" + template_text(part["cmd"]) + "`")
        elif "esc" in part:
            out.append(part["esc"])
    return "".join(out)


def _param_dict(param: Any) -> dict[str, Any]:
    return {"name": param.name, "default": None if param.default is None else template_text(param.default),
            "positional": param.positional, "type": param.type, "required": param.required,
            "enum": [str(v) for v in param.enum], "description": param.description}


def graph_of(dag: "Dag") -> dict[str, Any]:
    """The DAG's steps as nodes and `depends` as edges (from -> to), in the plan's order."""
    nodes = [{"id": s.id, "name": s.name, "type": s.type, "description": s.description} for s in dag.steps]
    edges = [[dep, s.id] for s in dag.steps for dep in s.depends]
    return {"nodes": nodes, "edges": edges}


def dag_detail(folder: DagsFolder, name: str, history_limit: int = 50) -> dict[str, Any]:
    """One DAG: its summary, params, graph, the workflow file's text and its run history."""
    entry = find_entry(folder, name)
    out = dag_summary(folder.home, entry, folder.runs, folder.index)
    try:
        with open(entry.file, encoding="utf-8", errors="replace") as fh:
            out["yaml"] = fh.read()
    except OSError as exc:
        out["yaml"] = None
        out["yaml_error"] = f"{entry.file}: {exc.strerror}"
    if entry.plan is not None:
        dag = entry.plan.dags[entry.plan.root]
        out["params"] = [_param_dict(p) for p in dag.params]
        out["graph"] = graph_of(dag)
        out["max_active_runs"] = dag.max_active_runs
        out["queue"] = dag.queue
    else:
        out.update(params=[], graph={"nodes": [], "edges": []})
    out["history"] = recent_runs(folder.home, name, history_limit, folder.runs)
    return out


def data_dir_usage(home: str) -> dict[str, Any]:
    """The bytes under runs/ and how many runs are kept (the history size), per DAG too."""
    from dagu.store.disk_usage import measure

    store = Store(home)
    usage = measure(store, finish_tombstones=False)
    per_dag: dict[str, dict[str, int]] = {}
    for (dag, _run_id), size in usage.runs.items():
        row = per_dag.setdefault(dag, {"runs": 0, "bytes": 0})
        row["runs"] += 1
        row["bytes"] += size
    return {"home": home, "runs_bytes": usage.total, "runs": len(usage.runs), "dags": per_dag}


def run_detail(home: str, dag: str, run_id: str) -> dict[str, Any]:
    """A run as its page shows it: the status with steps, attempts, usage, outputs and sub-runs
    (`reading.status`), the graph of the plan it ran, and the run that called it, if any."""
    from dagu.service.reading import status
    from dagu.spec.plan import PlanError, load_plan

    store = Store(home)
    run = store.run(dag, run_id)
    if not os.path.isdir(run.path):
        raise NotFound(f"no run {run_id!r} of {dag!r}")
    out = status(home, dag, run_id).to_dict()
    try:
        plan = load_plan(run.plan)
        ran = plan.dags.get(out.get("dag") or dag) or plan.dags[plan.root]
        out["graph"] = graph_of(ran)
    except (PlanError, OSError, KeyError) as exc:
        out["graph"] = {"nodes": [], "edges": []}
        out["problems"] = [*out.get("problems", []), f"plan: {exc}"]
    return out


def list_runs(home: str, dag: str | None = None, status: str | None = None, limit: int = 50,
              offset: int = 0) -> dict[str, Any]:
    """Runs of one DAG or of all, newest first, filtered by status, one page of them."""
    store = Store(home)
    dags = [check_dag_name(dag)] if dag else store.dag_names()
    rows = []
    for name in dags:
        for view in store.views(name) if os.path.isdir(store.dag_dir(name)) else []:
            st = view.status
            if status and st.status != status:
                continue
            rows.append({"dag": name, "run_id": st.run_id, "status": st.status, "started_at": st.started_at,
                         "finished_at": st.finished_at, "params": st.params, "parent": st.parent})
    rows.sort(key=lambda r: (r["started_at"] or 0, r["run_id"]), reverse=True)
    return {"total": len(rows), "offset": offset, "limit": limit, "runs": rows[offset:offset + limit]}


def check_step(home: str, dag: str, run_id: str, step: str) -> None:
    """NotFound unless the run exists and has this step (or handler)."""
    from dagu.service.reading import run_view

    store = Store(home)
    if not os.path.isdir(store.run(dag, run_id).path):
        raise NotFound(f"no run {run_id!r} of {dag!r}")
    status = run_view(home, dag, run_id).status
    if step not in status.steps and not any(h.id == step for h in status.handlers.values()):
        raise NotFound(f"run {run_id} has no step {step!r} (steps: {', '.join(status.steps)})")
