"""One YAML document -> one resolved `Dag`: the order of the passes for a single workflow.

Schema check, then normalization of DAG-level values and steps, then the
graph, then references.  Every pass reports and goes on, so a user sees all of
a file's problems from one `dagu compile`.
"""

from __future__ import annotations

import os
import re
from dataclasses import field

from dagu.spec.records import dataclass
from dagu.bounded_read import read_regular
from dagu.compiler import values
from dagu.compiler.context import DocContext, scalar_text
from dagu.compiler.graph import StepGraph, build_graph, check_rewind_targets, check_routes, dag_type
from dagu.compiler.references import Scope, check_references
from dagu.compiler.schedule import check_timezone, schedule
from dagu.compiler.schema_check import check_document, is_simple_document
from dagu.compiler.spellings import normalize_document
from dagu.compiler.steps import StepDefaults, StepDraft, build_step, flatten
from dagu.executors.catalog import TYPE_DEFAULT_KEYS
from dagu.spec.names import DAG_NAME_MAX, QUEUE_NAME_RULE, dag_name_problem, queue_name_problem
from dagu.spec.plan import Dag, SourceRef, Step

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any

HANDLERS = ("init", "success", "failure", "abort", "exit", "wait")

# DAG-level keys interpreted here; all others are kept verbatim in Dag.settings.
_DIRECT_KEYS = frozenset({
    "name", "description", "type", "steps", "params", "env", "dotenv", "working_dir", "shell",
    "schedule", "skip_if_successful", "catchup_window", "overlap_policy", "handler_on",
    "preconditions", "timeout_sec", "delay_sec", "max_active_steps", "max_active_runs",
    "max_output_size", "queue", "retry_policy", "tags", "labels", "group", "hist_retention_days",
    "hist_retention_runs",
    "timezone", "consts",
})


@dataclass
class CompiledDoc:
    """A document's Dag and the sub-DAG calls it makes, for the file-level passes."""

    dag: Dag
    calls: list[tuple[str, tuple]] = field(default_factory=list)  # (target, path of `call`)


def check_dag_name(ctx: DocContext, path: tuple, name: str) -> None:
    """A DAG name is a folder of the data dir: the one rule of spec/names.py, reported at its line."""
    problem = dag_name_problem(name)
    if problem:
        mended = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:DAG_NAME_MAX]
        too_long = len(name) > DAG_NAME_MAX  # the reason says it all
        ctx.report(path, "invalid-dag-name", value=repr(name), reason=problem, notes=[] if too_long else [
                   "use letters, digits, '_', '.' and '-'" + (f" (e.g. {mended!r})" if mended else "")
                   + ("; not starting with '.', without '..'" if "." in name else "")])


def check_queue_name(ctx: DocContext, path: tuple, name: object) -> None:
    """`queue:` is a folder of the data dir too (spec/names.py)."""
    problem = queue_name_problem(name)
    if problem and isinstance(name, str):
        ctx.report(path, "invalid-queue-name", value=repr(name), reason=problem, notes=[QUEUE_NAME_RULE])


def _int(raw: Any, default: int | None) -> int | None:
    return raw if isinstance(raw, int) and not isinstance(raw, bool) else default


def _dotenv_names(paths: tuple[str, ...], base_dir: str, explicit: bool) -> tuple[set[str], bool]:
    """Keys of the dotenv files that exist now; `unknown` when a declared one is missing."""
    names: set[str] = set()
    unknown = False
    for p in paths:
        full = p if os.path.isabs(p) else os.path.join(base_dir, p)
        try:
            for line in read_regular(full).decode("utf-8", "replace").splitlines():
                line = line.strip()
                if line.startswith("export "):
                    line = line[7:]
                key, sep, _ = line.partition("=")
                if sep and not line.startswith("#"):
                    names.add(key.strip())
        except OSError:
            unknown = unknown or explicit
    return names, unknown


def compile_document(ctx: DocContext, default_name: str, base_dir: str) -> CompiledDoc | None:
    """Run every per-document pass; None when the document is not a workflow at all."""
    data = ctx.doc.data
    if not isinstance(data, dict):
        ctx.report((), "not-a-mapping", actual=type(data).__name__ if data is not None else "nothing")
        return None
    simple = is_simple_document(data)  # asked once: both passes below want it
    normalize_document(ctx, base_dir, simple)
    check_document(ctx, simple)

    name = data.get("name") if isinstance(data.get("name"), str) else default_name
    check_dag_name(ctx, ("name",) if "name" in data else (), name)
    if "queue" in data:
        check_queue_name(ctx, ("queue",), data["queue"])
    kind, why = dag_type(ctx, data)
    chain = kind == "chain"
    tz = data.get("timezone") if isinstance(data.get("timezone"), str) else None
    if tz and not check_timezone(ctx, ("timezone",), tz):
        tz = None

    raw_steps = data.get("steps")
    if isinstance(raw_steps, (list, dict)) and not raw_steps:
        ctx.report(("steps",), "no-steps", notes=["add a step, e.g. steps: [echo hello]"])
    drafts = flatten(ctx, raw_steps, chain)
    graph = build_graph(ctx, drafts, chain, why)
    check_routes(ctx, drafts, set(graph.depends), chain)
    check_rewind_targets(ctx, drafts, graph)

    raw_dotenv = data.get("dotenv")
    dotenv = tuple(raw_dotenv) if isinstance(raw_dotenv, list) else (raw_dotenv,) if isinstance(raw_dotenv, str) else (".env",)
    dotenv = tuple(scalar_text(p) for p in dotenv)
    defaults = StepDefaults(
        shell=values.shell_words(ctx, ("shell",), data.get("shell")),
        working_dir=ctx.template(("working_dir",), data["working_dir"]) if data.get("working_dir") is not None else None,
        retry_policy=values.retry_policy(ctx, ("retry_policy",), data.get("retry_policy")),
        max_output_size=_int(data.get("max_output_size"), 1048576) or 1048576,
        chain=chain,
        type_defaults={key: data[key] for key in TYPE_DEFAULT_KEYS if isinstance(data.get(key), dict)},
    )
    _check_default_secrets(ctx, data)
    env = values.env_entries(ctx, ("env",), data.get("env"), None)
    params = values.params(ctx, ("params",), data.get("params"))
    custom_types = data["step_types"] if isinstance(data.get("step_types"), dict) else {}
    if custom_types:
        from dagu.compiler.custom_types import check_definitions

        check_definitions(ctx, custom_types)

    by_id = {d.id: d for d in reversed(drafts)}  # first draft wins for duplicated ids
    steps = [build_step(ctx, by_id[sid], graph.depends[sid], defaults, custom_types) for sid in _declared(drafts, by_id)]
    handlers = _handlers(ctx, data.get("handler_on"), defaults, custom_types)

    dotenv_keys, unknown_dotenv = _dotenv_names(dotenv, base_dir, explicit="dotenv" in data)
    scope = _scope(env, params, dotenv_keys, steps, list(handlers.values()), data)
    scope.unknown_dotenv = unknown_dotenv
    preconditions = values.conditions(ctx, ("preconditions",), data.get("preconditions"), None)
    handler_owners = {f"handler_on.{h}" for h in handlers}
    check_references(ctx, ctx.refs, scope, _ancestors_of(graph), handler_owners)

    file = os.path.abspath(ctx.source.path)
    spans, start = ctx.doc.spans, ctx.doc.start
    source_map = {}
    for s in steps:
        span = spans.get(by_id[s.id].path) or start
        source_map[s.id] = SourceRef(file, span.line, span.col)
    if isinstance(data.get("secrets"), list):  # a secret that cannot be resolved is named at its line
        for i in range(len(data["secrets"])):
            origin, doc, where = ctx.where(("secrets", i))
            span = doc.spans.get(where)
            if span:
                source_map[f"secrets.{i}"] = SourceRef(os.path.abspath(origin.path), span.line, span.col)
    for h in handlers:
        origin, doc, where = ctx.where(("handler_on", h))  # a handler may come from base.yaml
        span = doc.key_spans.get(where)
        if span:
            source_map[f"handler_on.{h}"] = SourceRef(os.path.abspath(origin.path), span.line, span.col)

    catchup = values.parse_duration(ctx, ("catchup_window",), data.get("catchup_window"))
    tags = data.get("tags")
    tags = [t.strip() for t in tags.split(",")] if isinstance(tags, str) else tags if isinstance(tags, list) else []
    settings = {k: v for k, v in data.items() if k not in _DIRECT_KEYS}
    dag = Dag(
        name=name,
        type=kind,
        base_dir=base_dir,
        file=file,
        steps=tuple(steps),
        order=tuple(graph.order),
        description=data.get("description") if isinstance(data.get("description"), str) else None,
        params=params,
        env=env,
        dotenv=dotenv,
        working_dir=defaults.working_dir,
        shell=defaults.shell,
        schedule=schedule(ctx, ("schedule",), data.get("schedule"), tz),
        skip_if_successful=bool(data.get("skip_if_successful", False)),
        catchup_window_sec=int(catchup) if catchup is not None else None,
        overlap_policy=data.get("overlap_policy") if isinstance(data.get("overlap_policy"), str) else "skip",
        preconditions=preconditions,
        timeout_sec=values.parse_duration(ctx, ("timeout_sec",), data.get("timeout_sec")),
        delay_sec=values.parse_duration(ctx, ("delay_sec",), data.get("delay_sec")) or 0,
        max_active_steps=_int(data.get("max_active_steps"), None),
        max_active_runs=_int(data.get("max_active_runs"), 1) or 1,
        max_output_size=defaults.max_output_size,
        queue=data.get("queue") if isinstance(data.get("queue"), str) else None,
        tags=tuple(scalar_text(t) for t in tags),
        labels={str(k): scalar_text(v) for k, v in data["labels"].items()} if isinstance(data.get("labels"), dict) else {},
        group=data.get("group") if isinstance(data.get("group"), str) else None,
        hist_retention_days=_int(data.get("hist_retention_days"), None),
        hist_retention_runs=_int(data.get("hist_retention_runs"), None),
        handlers=handlers,
        retry_policy=defaults.retry_policy,
        settings=settings,
        source_map=source_map,
    )
    calls = [(s.call.dag, by_id[s.id].path + ("call",)) for s in steps if s.call is not None]
    calls += [(h.call.dag, ("handler_on", k, "call")) for k, h in handlers.items() if h.call is not None]
    return CompiledDoc(dag=dag, calls=calls)


def _declared(drafts: list[StepDraft], by_id: dict[str, StepDraft]) -> list[str]:
    """Step ids in file order, each once."""
    seen: list[str] = []
    for d in drafts:
        if by_id[d.id] is d:
            seen.append(d.id)
    return seen


def _ancestors_of(graph: StepGraph):
    position = {sid: i for i, sid in enumerate(graph.order)}
    cache: dict[str, set[str]] = {}

    def ancestors(step: str) -> set[str]:
        if step not in cache:
            cache[step] = graph.ancestors(step) if step in position else set()
        return cache[step]

    return ancestors


def _handlers(ctx: DocContext, raw: Any, defaults: StepDefaults, custom_types: dict[str, Any]) -> dict[str, Step]:
    if not isinstance(raw, dict):
        return {}
    out = {}
    for key in HANDLERS:
        body = raw.get(key)
        if isinstance(body, str):
            body = {"command": body}
        if not isinstance(body, dict):
            continue
        draft = StepDraft(index=-1, path=("handler_on", key), id=key, raw=body, explicit_id=False)
        out[key] = build_step(ctx, draft, (), defaults, custom_types, owner=f"handler_on.{key}")
    return out


def _scope(env, params, dotenv_keys, steps: list[Step], handlers: list[Step], data: dict) -> Scope:
    scope = Scope()
    scope.names.update(e.name for e in env)
    scope.names.update(p.name for p in params)
    scope.names.update(dotenv_keys)
    secrets = data.get("secrets")
    if isinstance(secrets, list):
        scope.names.update(s["name"] if isinstance(s, dict) and "name" in s else str(s) for s in secrets)
    for owner, s in [*((s.id, s) for s in steps), *((f"handler_on.{h.id}", h) for h in handlers)]:
        scope.step_env[owner] = {e.name for e in s.env}
        if s.output:
            scope.outputs.setdefault(s.output, []).append(s.id)
        approval = s.options.get("approval")
        if isinstance(approval, dict) and isinstance(approval.get("input"), list):
            for name in approval["input"]:  # what the approver enters reaches the steps after it
                scope.outputs.setdefault(str(name), []).append(s.id)
    scope.step_ids.update(s.id for s in steps)
    box = data.get("sandbox")
    if isinstance(box, dict):
        scope.inherit_env = box.get("inherit_env") is True
        if isinstance(box.get("env_passthrough"), list):
            scope.passthrough = tuple(str(p) for p in box["env_passthrough"])
    for owner, s in [*((s.id, s) for s in steps), *((f"handler_on.{h.id}", h) for h in handlers)]:
        step_box = s.options.get("sandbox")
        if isinstance(step_box, dict):
            if step_box.get("inherit_env") is True:
                scope.step_passthrough[owner] = ("*",)
            elif isinstance(step_box.get("env_passthrough"), list):
                scope.step_passthrough[owner] = tuple(str(p) for p in step_box["env_passthrough"])
    return scope


def _check_default_secrets(ctx: DocContext, data: dict) -> None:
    """A password written into a DAG-level defaults block (`smtp:`, `ssh:`, `redis:`, ...) is
    refused as it is in a step's `with:` (the smtp: block also serves the run's notifications)."""
    from dagu.compiler.step_checks import check_literal_secrets
    from dagu.executors.catalog import CATALOGUE

    for line in CATALOGUE:
        if line.dag_defaults and isinstance(data.get(line.dag_defaults), dict):
            check_literal_secrets(ctx, (line.dag_defaults,), data[line.dag_defaults], line.config_schema,
                                  f"the DAG's {line.dag_defaults}: block")
