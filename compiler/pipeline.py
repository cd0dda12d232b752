"""A file -> a Plan: every document, every DAG it calls, and the checks across them.

A workflow file may hold several `---`-separated DAGs (the first is the main
one, the others sub-DAGs called by name) and may `call` DAGs in files beside
it.  Those files are compiled too and embedded, so a plan is self-contained:
the runtime never goes back to YAML.  Sub-DAG calls that loop are rejected here.
Each document is merged over its directory's base config first
(base_config.py); the plan lists the base configs among its dependencies.
"""

from __future__ import annotations

import gc
import graphlib
import os
from dataclasses import field

from dagu.spec.records import dataclass
from dagu import __version__
from dagu.compiler.base_config import BaseConfigs, overlay
from dagu.compiler.context import DocContext
from dagu.compiler.dagfile import CompiledDoc, compile_document
from dagu.compiler.diagnostics import Diagnostic, Reporter, span_of
from dagu.compiler.graph import suggest
from dagu.compiler.loader import SourceFile, read_source
from dagu.spec.plan import PLAN_VERSION, Dag, Plan

YAML_SUFFIXES = (".yaml", ".yml")


@dataclass
class FileUnit:
    """One compiled file: its source and its documents' DAGs, by name."""

    source: SourceFile | None
    dags: dict[str, CompiledDoc] = field(default_factory=dict)
    contexts: dict[str, DocContext] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)


@dataclass
class CompileResult:
    """What `dagu compile` reports for one file: a plan when there is no error."""

    path: str
    plan: Plan | None
    diagnostics: list[Diagnostic]

    @property
    def ok(self) -> bool:
        return not any(d.is_error for d in self.diagnostics)


def _compile_unit(path: str, reporter: Reporter, bases: BaseConfigs, main: bool,
                  text: str | None = None) -> FileUnit:
    """One file's documents; `main`: the file whose first document is the plan's main DAG."""
    base_path = bases.path_for(path)
    if base_path is not None and base_path == os.path.abspath(path):
        from dagu.compiler.codes import CODES

        entry = CODES["base-config-not-a-dag"]
        reporter.add(Diagnostic(
            file=path, line=1, col=1, severity=entry.severity, code=entry.name,
            message=entry.template.format(value=path),
            notes=("compile the DAG files beside it: each one is merged over it",)))
        return FileUnit(source=None)
    source = read_source(path, reporter, text)
    unit = FileUnit(source=source)
    if source is None:
        return unit
    if source.unparsable:
        return unit
    if not source.documents:
        reporter.at(source, 1, 1, "empty-file", notes=["a minimal workflow: steps: [echo hello]"])
        return unit
    base = bases.load(base_path) if base_path is not None else None
    base_dir = os.path.dirname(os.path.abspath(path))
    stem = os.path.splitext(os.path.basename(path))[0]
    for i, doc in enumerate(source.documents):
        ctx = DocContext(source, doc, reporter)
        if base is not None:
            ctx = overlay(base, ctx, main=main and i == 0)
        named = isinstance(doc.data, dict) and isinstance(doc.data.get("name"), str)
        if i > 0 and not named and isinstance(doc.data, dict):
            ctx.report((), "unnamed-sub-dag", index=i + 1, notes=["add `name: <dag-name>` to this document"])
        compiled = compile_document(ctx, stem if i == 0 else f"{stem}-{i + 1}", base_dir)
        if compiled is None:
            continue
        name = compiled.dag.name
        if name in unit.dags:
            first = unit.contexts[name].doc.start
            ctx.report(("name",), "duplicate-dag-name", name=name, first_line=first.line if first else 1)
            continue
        unit.dags[name] = compiled
        unit.contexts[name] = ctx
        unit.order.append(name)
    return unit


def _call_file(base_dir: str, target: str) -> str | None:
    """The file a `call` names when it is not a DAG of the same file."""
    candidates = [target] if target.endswith(YAML_SUFFIXES) else [target + s for s in YAML_SUFFIXES]
    for c in candidates:
        full = c if os.path.isabs(c) else os.path.join(base_dir, c)
        if os.path.isfile(full):
            return os.path.normpath(full)
    return None


def compile_file(path: str, reporter: Reporter | None = None, text: str | None = None) -> CompileResult:
    """Compile one workflow file and every DAG it calls into a single plan.

    The cyclic garbage collector is paused meanwhile: compiling allocates
    hundreds of thousands of small objects that all stay alive, and the
    collector's passes over them took a third of the time of a 10,000-step
    file.  Nothing here makes much cyclic garbage; it is collected afterwards.

    `text`: compile this instead of the file's content, as if saved at `path` (the web
    editor's check before a save: nothing is written unless it compiles).
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        return _compile_file(path, reporter or Reporter(), text)
    finally:
        if paused:
            gc.enable()


def _compile_file(path: str, reporter: Reporter, text: str | None = None) -> CompileResult:
    units: dict[str, FileUnit] = {}
    bases = BaseConfigs(reporter)
    root_key = os.path.normpath(os.path.abspath(path))
    units[root_key] = _compile_unit(path, reporter, bases, main=True, text=text)
    calls: dict[str, dict[str, tuple]] = {}  # caller -> callee -> (ctx, path of the call)
    dags: dict[str, Dag] = {}
    pending = [root_key]
    while pending:
        key = pending.pop()
        unit = units[key]
        if unit.source is None:
            continue
        base_dir = os.path.dirname(key)
        for name in unit.order:
            compiled, ctx = unit.dags[name], unit.contexts[name]
            if name in dags and dags[name].file != compiled.dag.file:
                ctx.report(("name",) if "name" in ctx.doc.data else (), "duplicate-dag-name", name=name,
                           first_line=1, notes=[f"also defined in {dags[name].file}"])
                continue
            dags[name] = compiled.dag
            edges = calls.setdefault(name, {})
            for target, where in compiled.calls:
                if target in unit.dags:
                    edges.setdefault(target, (ctx, where))
                    continue
                file = _call_file(base_dir, target)
                if file is None:
                    known = sorted(unit.dags) + sorted(
                        os.path.splitext(f)[0] for f in os.listdir(base_dir) if f.endswith(YAML_SUFFIXES))
                    ctx.report(where, "unknown-call-target", step=_step_id(ctx, where), target=target,
                               notes=suggest(target, known) or [
                                   f"define it after --- in this file with name: {target}, or create {target}.yaml beside it"])
                    continue
                if file not in units:
                    units[file] = _compile_unit(_display_path(file), reporter, bases, main=False)
                    pending.append(file)
                callee = units[file]
                if callee.order:
                    edges.setdefault(callee.order[0], (ctx, where))
    _report_recursion(calls)
    _check_call_params(units, dags)
    root = units[root_key]
    used_bases = bases.used()
    if used_bases:
        _drop_repeats(reporter)
    if reporter.error_count or not root.order:
        return CompileResult(path, None, reporter.diagnostics)
    deps = {k: u.source.sha256 for k, u in sorted(units.items()) if k != root_key and u.source}
    deps.update(used_bases)
    plan = Plan(
        plan_version=PLAN_VERSION,
        compiler=f"dagu {__version__}",
        source=root_key,
        source_sha256=root.source.sha256,  # type: ignore[union-attr]
        root=root.order[0],
        dags=dict(sorted(dags.items())),
        dependencies=deps,
    )
    return CompileResult(path, plan, reporter.diagnostics)


def _drop_repeats(reporter: Reporter) -> None:
    """A problem with a base value is found once per document merged over it: report it once."""
    seen: set[tuple] = set()
    kept = []
    for d in reporter.diagnostics:
        key = (d.file, d.line, d.col, d.code, d.message)
        if key not in seen:
            seen.add(key)
            kept.append(d)
    reporter.diagnostics[:] = kept


def _display_path(path: str) -> str:
    """How diagnostics name a file found through `call`: relative to the cwd when inside it."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _check_call_params(units: dict[str, FileUnit], dags: dict[str, Dag]) -> None:
    """A call may pass only the named params its DAG declares: the run would refuse the rest
    (engine/params.py), after the steps before the call had already run."""
    for unit in units.values():
        for name in unit.order:
            compiled, ctx = unit.dags[name], unit.contexts[name]
            steps = {s.id: s for s in compiled.dag.steps}
            for target, where in compiled.calls:
                callee, step = dags.get(target), steps.get(_step_id(ctx, where))
                if callee is None or step is None or step.call is None:
                    continue
                declared = {p.name for p in callee.params if not p.positional}
                for param in step.call.params:
                    if not param.name.isdigit() and param.name not in declared:
                        at = where[:-1] + ("params",) if where and where[-1] == "call" else where
                        ctx.report(at, "undeclared-call-param", step=step.id, param=param.name, target=target,
                                   notes=[f"DAG '{target}' declares: {', '.join(sorted(declared)) or 'no named params'}"])


def _step_id(ctx: DocContext, where: tuple) -> str:
    if where and where[0] == "handler_on":
        return f"handler_on.{where[1]}"
    node = ctx.doc.data.get("steps")
    for part in where[1:-1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
        if isinstance(node, dict):
            return str(node.get("id") or node.get("name") or part)
    return str(where[1]) if len(where) > 1 else "?"


def _report_recursion(calls: dict[str, dict[str, tuple]]) -> None:
    """Report each loop of sub-DAG calls; networkx is imported only when there is one."""
    try:
        graphlib.TopologicalSorter({k: tuple(v) for k, v in calls.items()}).prepare()
        return
    except graphlib.CycleError:
        pass
    import networkx as nx

    graph = nx.DiGraph()
    for caller, callees in calls.items():
        for callee, where in callees.items():
            graph.add_edge(caller, callee, where=where)
    for component in nx.strongly_connected_components(graph):
        (first, *others) = sorted(component)
        if not others and not graph.has_edge(first, first):
            continue
        cycle = nx.find_cycle(graph.subgraph(component), source=first)
        names = [first] + [v for _u, v in cycle]
        ctx, where = graph.edges[cycle[0]]["where"]
        notes = []
        for u, v in cycle:
            c, w = graph.edges[u, v]["where"]
            source, doc, w = c.where(w)
            notes.append(f"'{u}' calls '{v}' ({source.path}:{span_of(doc, w).line})")
        ctx.report(where, "call-recursion", cycle=" -> ".join(names), notes=notes)
