"""Graph checks on one DAG's steps: ids, dependencies, cycles, order.

Stricter than upstream on purpose: a cycle is a compile error (upstream's
`validate` accepts it), printed as the path around the loop with the line of
each edge so the user sees which `depends` to cut.

The order comes from the standard library's graphlib, which also detects that
a cycle exists; networkx is imported only then, to find every loop (strongly
connected components) and walk it.  Importing networkx costs about 220 ms,
which alone would break the 250 ms budget of `dagu compile` on a small file.
"""

from __future__ import annotations

import graphlib

from dagu.spec.records import dataclass
from dagu.compiler.context import DocContext
from dagu.compiler.diagnostics import span_of
from dagu.compiler.legacy import LEGACY_CODES
from dagu.compiler.steps import (
    ID_MAX_BYTES, NAME_MAX_BYTES, RESERVED_IDS, STEP_ID, WRITTEN_ID, StepDraft, declares_depends,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any

# Why a DAG has its type (see `dagu explain default-type`).
WRITTEN, READ_AS_1X, DEFAULT = "written", "1.x", "default"


@dataclass
class StepGraph:
    """The checked dependency graph: final depends per step and a topological order."""

    depends: dict[str, tuple[str, ...]]
    order: list[str]

    def ancestors(self, step: str) -> set[str]:
        """Every step that must finish before `step` (transitively)."""
        seen: set[str] = set()
        stack = list(self.depends.get(step, ()))
        while stack:
            dep = stack.pop()
            if dep not in seen:
                seen.add(dep)
                stack.extend(self.depends.get(dep, ()))
        return seen


def suggest(word: str, choices: list[str]) -> list[str]:
    """A 'did you mean' note, when a close match exists."""
    import difflib  # here: only a file with a problem needs it

    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return [f"did you mean '{close[0]}'?"] if close else []


def label(draft: StepDraft) -> str:
    """How messages name a step: its id, or its name when the id was made up (`cmd_2`)."""
    return draft.name if not draft.explicit_id and draft.name else draft.id


def check_ids(ctx: DocContext, drafts: list[StepDraft]) -> dict[str, StepDraft]:
    """Report invalid and clashing ids and names (spec 009); return the first draft for each id.

    An `id:` is a strict identifier (it appears as ${id.output}); a name is
    free text of at most 255 bytes.  Names and written ids are unique, and no
    step's id is another step's name, so `depends` on either one is never
    ambiguous.  A clash is reported once, at the later of the two steps.
    """
    by_id: dict[str, StepDraft] = {}
    by_name: dict[str, StepDraft] = {}
    written: dict[str, StepDraft] = {}  # ids given as `id:`
    for d in drafts:
        has_id = "id" in d.raw
        id_at = d.path + ("id",) if has_id else d.path
        name_at = d.path + ("name",)
        clash = False
        if has_id:
            _check_written_id(ctx, id_at, d.id)
        elif d.explicit_id and not STEP_ID.match(d.id):  # a key of the map form of steps:
            ctx.report(id_at, "invalid-step-id", value=repr(d.id),
                       reason="use a letter first, then letters, digits, '_' or '-'",
                       notes=["ids appear in expressions like ${build.output}, so they must be simple names"])
        if d.name is not None and len(d.name.encode("utf-8")) > NAME_MAX_BYTES:
            ctx.report(name_at, "step-name-too-long", size=len(d.name.encode("utf-8")), limit=NAME_MAX_BYTES)
        if d.name is not None and d.name in by_name:
            first = span_of(ctx.doc, by_name[d.name].path)
            ctx.report(name_at, "duplicate-step-name", name=d.name, first_line=first.line,
                       notes=["rename one of them: depends may name a step by its name"])
            clash = True
        if has_id and d.id in written:
            first = span_of(ctx.doc, written[d.id].path)
            ctx.report(id_at, "duplicate-step-id", step=d.id, first_line=first.line)
            clash = True
        elif has_id and d.id in by_name:
            other = by_name[d.id]
            ctx.report(id_at, "step-id-is-a-name", value=d.id, first_line=span_of(ctx.doc, other.path).line,
                       notes=_CLASH_NOTE)
            clash = True
        if d.name is not None and d.name in written and written[d.name] is not d:
            other = written[d.name]
            ctx.report(name_at, "step-id-is-a-name", value=d.name, first_line=span_of(ctx.doc, other.path).line,
                       notes=_CLASH_NOTE)
            clash = True
        if d.name is not None:
            by_name.setdefault(d.name, d)
        if has_id:
            written.setdefault(d.id, d)
        if d.id in by_id:
            if not clash:
                first = span_of(ctx.doc, by_id[d.id].path)
                ctx.report(id_at, "duplicate-step-id", step=d.id, first_line=first.line)
            continue
        by_id[d.id] = d
    return by_id


_CLASH_NOTE = ["depends may name a step by its id or its name, so this would be ambiguous: rename one of them"]


def _check_written_id(ctx: DocContext, where: tuple, sid: str) -> None:
    if not WRITTEN_ID.match(sid):
        ctx.report(where, "invalid-step-id", value=repr(sid),
                   reason="use a letter first, then letters, digits or '_'",
                   notes=["ids appear in expressions like ${build.output}; a name may be any text"])
    elif len(sid.encode("utf-8")) > ID_MAX_BYTES:
        ctx.report(where, "invalid-step-id", value=repr(sid),
                   reason=f"{len(sid.encode('utf-8'))} bytes, the limit is {ID_MAX_BYTES}")
    elif sid.lower() in RESERVED_IDS:
        ctx.report(where, "reserved-step-id", value=repr(sid),
                   notes=[f"reserved (in any case): {', '.join(sorted(RESERVED_IDS))}"])


def dag_type(ctx: DocContext, data: dict[str, Any]) -> tuple[str, str]:
    """The DAG's type and why it has it.

    A written `type:` wins.  Without one, a DAG whose steps declare `depends`
    is a graph (upstream's default since dagucloud/dagu #2168), and one
    without any runs in file order, a chain: that reads older v2 files as they
    were meant and newer ones at worst slower, never out of order.  A file
    that spells keys the Dagu 1.x way is read as 1.x meant it, a chain to
    which depends add edges: `chain-depends` then points to `dagu migrate`,
    which writes those edges out.
    """
    written = data.get("type")
    if written in ("graph", "chain"):
        return written, WRITTEN
    if not declares_depends(data.get("steps")):
        return "chain", DEFAULT
    if _looks_1x(ctx):
        return "chain", READ_AS_1X
    return "graph", DEFAULT


def build_graph(ctx: DocContext, drafts: list[StepDraft], chain: bool, why: str = WRITTEN) -> StepGraph:
    """Resolve depends (by id, or by name), check them, and order the steps."""
    by_id = check_ids(ctx, drafts)
    by_name: dict[str, str] = {}
    for d in drafts:
        if d.name is not None:
            by_name.setdefault(d.name, d.id)
    ids = list(by_id)
    depends: dict[str, tuple[str, ...]] = {}
    edge_where: dict[tuple[str, str], tuple] = {}
    routed = _routed_from(drafts, by_id)
    for d in drafts:
        if by_id.get(d.id) is not d:
            continue
        resolved: list[str] = list(d.implied)
        for router in routed.get(d.id, ()):  # a route target waits for its router
            if router not in resolved:
                resolved.append(router)
        if chain and d.declares_depends:
            notes = ["change `type: chain` to `type: graph` to declare dependencies, "
                     "or remove depends: a chain runs steps in file order"]
            if why == READ_AS_1X:  # 1.x ran the chain plus the depends: keep both
                notes = ["Dagu 1.x ran this step after the one before it and after its depends; "
                         f"`dagu migrate {ctx.source.path} --write` rewrites the file as type: graph "
                         "with every dependency written out"]
            ctx.report(d.path + ("depends",), "chain-depends", at_key=True, step=label(d), notes=notes)
        else:
            for target, where in d.depends:
                real = target if target in by_id else by_name.get(target)
                if real is None:
                    ctx.report(where, "unknown-depends", step=label(d), target=target,
                               notes=suggest(target, ids + list(by_name)))
                    continue
                if real not in resolved:
                    resolved.append(real)
                edge_where[(real, d.id)] = where
        depends[d.id] = tuple(resolved)
    index = {sid: d.index for sid, d in by_id.items()}
    try:
        order = ordered(depends, index)
    except graphlib.CycleError:
        _report_cycles(ctx, depends, edge_where, by_id)
        order = sorted(depends, key=index.__getitem__)
    return StepGraph(depends=depends, order=order)


def _looks_1x(ctx: DocContext) -> bool:
    """The file spells something the Dagu 1.x way (reported before the graph is built)."""
    return any(d.code in LEGACY_CODES and d.file == ctx.source.path for d in ctx.reporter.diagnostics)


def ordered(depends: dict[str, tuple[str, ...]], index: dict[str, int]) -> list[str]:
    """A topological order in waves: each wave's steps could run together, in file order."""
    sorter = graphlib.TopologicalSorter(depends)
    sorter.prepare()
    order: list[str] = []
    while sorter.is_active():
        wave = sorted(sorter.get_ready(), key=index.__getitem__)
        order.extend(wave)
        sorter.done(*wave)
    return order


def _routed_from(drafts: list[StepDraft], by_id: dict[str, StepDraft]) -> dict[str, list[str]]:
    """target id -> the router steps that can send the run to it."""
    routed: dict[str, list[str]] = {}
    for d in drafts:
        routes = d.raw.get("routes")
        if isinstance(routes, dict) and by_id.get(d.id) is d:
            for targets in routes.values():
                for target in targets if isinstance(targets, list) else [targets]:
                    if isinstance(target, str) and target in by_id and target != d.id:
                        routed.setdefault(target, []).append(d.id)
    return routed


def _report_cycles(ctx: DocContext, depends: dict[str, tuple[str, ...]], edge_where: dict,
                   by_id: dict[str, StepDraft]) -> None:
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from(depends)
    graph.add_edges_from((dep, sid) for sid, deps in depends.items() for dep in deps)
    index = {sid: d.index for sid, d in by_id.items()}
    for component in nx.strongly_connected_components(graph):
        if len(component) == 1:
            (only,) = component
            if not graph.has_edge(only, only):
                continue
        start = min(component, key=index.__getitem__)
        sub = graph.subgraph(component)
        # Walk the loop in the direction a user reads it: "a depends on b".
        cycle_edges = nx.find_cycle(sub.reverse(copy=False), source=start)
        names = [start] + [v for _u, v in cycle_edges]
        notes = []
        for step, dep in cycle_edges:
            where = edge_where.get((dep, step))
            line = span_of(ctx.doc, where).line if where else span_of(ctx.doc, by_id[step].path).line
            notes.append(f"'{step}' depends on '{dep}' (line {line})")
        first_where = edge_where.get((cycle_edges[0][1], cycle_edges[0][0]), by_id[start].path)
        ctx.report(first_where, "dependency-cycle", cycle=" -> ".join(names), notes=notes)


def check_routes(ctx: DocContext, drafts: list[StepDraft], ids: set[str], chain: bool = False) -> None:
    """Every router target must be a step of the same DAG, under one route only (upstream);
    a router has no place in a chain."""
    for d in drafts:
        routes = d.raw.get("routes")
        if chain and (d.raw.get("type") == "router" or isinstance(routes, dict)):
            at = d.path + ("type",) if d.raw.get("type") == "router" else d.path + ("routes",)
            ctx.report(at, "chain-router", at_key=True, step=label(d),
                       notes=["make the DAG type: graph; a route target then waits for its router"])
        if not isinstance(routes, dict):
            continue
        seen: dict[str, Any] = {}
        for pattern, targets in routes.items():
            if str(pattern).strip() == "":
                ctx.report(d.path + ("routes", pattern), "empty-route-pattern", at_key=True, step=d.id)
            tlist = targets if isinstance(targets, list) else [targets]
            for k, target in enumerate(tlist):
                where = d.path + ("routes", pattern) + ((k,) if isinstance(targets, list) else ())
                if isinstance(target, str) and target not in ids:
                    ctx.report(where, "unknown-route-target", step=d.id, target=target,
                               notes=suggest(target, sorted(ids)))
                elif isinstance(target, str) and target in seen and seen[target] != pattern:
                    ctx.report(where, "duplicate-route-target", step=d.id, target=target,
                               notes=[f"also under route {seen[target]!r}"])
                elif isinstance(target, str):
                    seen[target] = pattern


def check_rewind_targets(ctx: DocContext, drafts: list[StepDraft], graph: StepGraph) -> None:
    """approval.rewind_to must name the step itself or one of its ancestors; a name becomes the id,
    so the runtime only ever sees ids."""
    by_name = {d.name: d.id for d in reversed(drafts) if d.name is not None}
    for d in drafts:
        approval = d.raw.get("approval")
        if not isinstance(approval, dict) or not isinstance(approval.get("rewind_to"), str):
            continue
        target = approval["rewind_to"]
        resolved = target if target in graph.depends else by_name.get(target)
        if resolved is None:
            ctx.report(d.path + ("approval", "rewind_to"), "bad-rewind-target", step=d.id, target=target,
                       why="which is not a step of this DAG", notes=suggest(target, sorted(graph.depends)))
        elif resolved != d.id and resolved not in graph.ancestors(d.id):
            ctx.report(d.path + ("approval", "rewind_to"), "bad-rewind-target", step=d.id, target=target,
                       why="which does not run before it (not among the steps it depends on)")
        elif resolved != target:
            approval["rewind_to"] = resolved
