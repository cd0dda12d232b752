"""Bring every spelling of a workflow document to our v2 spelling, before the checks.

Three spellings of the same workflow are written in the wild:

- Dagu 1.x (camelCase keys, `executor:`, `run: other-dag`): each is reported
  as an error with its exact fix (legacy.py) and then rewritten in memory, so
  the rest of the file is still checked with its intended meaning;
- our v2 spelling: left as it is;
- upstream's newest spelling: `run:` (a shell command), `action:` + `with:`
  (actions.py), `consts:` (values inlined into every `${consts.NAME}` when
  the file is compiled) and `secrets:` as a list of names.  These are
  accepted and rewritten, so both v2 spellings compile to the same plan.

Rewriting keeps the position of every node (legacy.copy_spans), so later
diagnostics point at what the user wrote.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from dagu.compiler.context import DocContext, scalar_text
from dagu.compiler.diagnostics import span_of
from dagu.compiler.legacy import (
    LEGACY_CODES, Fix, apply_fixes, copy_spans, find_fixes, node_at, replace_key, snake_case,
)
from dagu.compiler.loader import SourceFile
from dagu.compiler.schema_check import show_value, where

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any
else:
    Any = object  # the aliases below are built at run time; for type checkers this is typing.Any

if TYPE_CHECKING:
    from dagu.compiler.actions import ActionProblem

Path = tuple[Any, ...]

# Keys that say what a step runs in our v2 spelling: `run:`/`action:` replace them.
_EXECUTION_KEYS = ("command", "script", "call", "exec", "type", "config", "params", "routes", "value",
                   "messages", "llm", "agent")
_RUN_WITH_KEYS = ("shell", "shell_args", "shell_packages")
CONST_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CONST_REF = re.compile(r"(?<!\\)\$\{consts\.([A-Za-z][A-Za-z0-9_]*)\}")


def normalize_document(ctx: DocContext, base_dir: str, simple: bool = False) -> None:
    """Report 1.x spellings, then rewrite the document's data into our v2 spelling.

    `simple`: the document holds only v2 keys of plain values (schema_check.is_simple_document),
    so it has no 1.x spelling and no run:/action: step to find; only consts and secrets remain.
    """
    data = ctx.doc.data
    fixes = [] if simple else find_fixes(ctx.doc, dag_names(ctx.source), base_dir)
    if fixes:
        told = any(d.code in LEGACY_CODES and d.file == ctx.source.path for d in ctx.reporter.diagnostics)
        first = min(fixes, key=lambda f: f.key_span.start)
        for fix in fixes:
            report_fix(ctx, fix, hint_migrate=fix is first and not told)
    apply_fixes(ctx.doc, fixes)
    ctx.consts = _consts(ctx, data.get("consts"))
    _secrets(ctx, data.get("secrets"))
    if simple:
        return
    custom = frozenset(data["step_types"]) if isinstance(data.get("step_types"), dict) else frozenset()
    for path, step in steps_of(data):
        if "run" in step or "action" in step:
            _newest_step(ctx, path, step, custom)


def dag_names(source: SourceFile) -> frozenset[str]:
    """The names of the DAGs defined in a file (its `---` documents)."""
    return frozenset(d.data["name"] for d in source.documents
                     if isinstance(d.data, dict) and isinstance(d.data.get("name"), str))


def steps_of(data: dict[str, Any]) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every step mapping of a document, with its path: list, parallel groups, map, handlers."""
    steps = data.get("steps")
    if isinstance(steps, list):
        for i, item in enumerate(steps):
            if isinstance(item, dict):
                yield ("steps", i), item
            elif isinstance(item, list):
                for j, member in enumerate(item):
                    if isinstance(member, dict):
                        yield ("steps", i, j), member
    elif isinstance(steps, dict):
        for key, body in steps.items():
            if isinstance(body, dict):
                yield ("steps", key), body
    handlers = data.get("handler_on")
    if isinstance(handlers, dict):
        for key, body in handlers.items():
            if isinstance(body, dict):
                yield ("handler_on", key), body


def report_fix(ctx: DocContext, fix: Fix, hint_migrate: bool = False) -> None:
    """One 1.x spelling as an error at its key, with the v2 text to write instead.

    The first one of a file also says that `dagu migrate` rewrites them all.
    """
    path = fix.path + (fix.key,)
    if fix.kind == "rename":
        camel = snake_case(fix.key) == fix.new and fix.key.lower() != fix.new
        code = "camel-case-key" if camel else "legacy-key"
        notes = [f"rename it to '{fix.new}'"]
        fields = {"key": fix.key, "new": fix.new}
    elif fix.kind == "executor":
        code = "legacy-executor"
        if not fix.new:
            fields = {"fix": "`type: NAME` and `config: {...}` on the step"}
            notes = ["'executor:' holds only type and config; write them on the step instead"]
        elif fix.reason == "config":
            fields = {"fix": f"`type: {fix.new}` and `config:` on the step"}
            notes = [f"write 'type: {fix.new}' in place of 'executor:' and move its 'config:' up one level"]
        else:
            fields = {"fix": f"`type: {fix.new}`"}
            notes = [f"write 'type: {fix.new}' in place of 'executor:'"]
    else:
        code = "legacy-run-call"
        target = scalar_text(node_at(ctx.doc.data, path)).strip()
        notes = [f"write 'call: {target}' to call it ({fix.reason})",
                 f"to run a command named '{target}' instead, write 'command: {target}'"]
        fields = {"target": target}
    if hint_migrate:
        notes.append(f"`dagu migrate {ctx.source.path} --write` rewrites every Dagu 1.x spelling of the file")
    ctx.report(path, code, at_key=True, notes=notes, **fields)


def _newest_step(ctx: DocContext, path: Path, step: dict[str, Any], custom: frozenset[str]) -> None:
    """`run:` / `action:` + `with:` -> the keys our v2 spelling uses for the same step."""
    data = ctx.doc.data
    owner = where(data, path)
    lead = "run" if "run" in step else "action"
    others = [k for k in (("action",) if lead == "run" else ()) + _EXECUTION_KEYS if k in step]
    if others:
        for key in others:
            ctx.report(path + (key,), "conflicting-keys", at_key=True, where=owner, first=lead, second=key,
                       notes=[f"with '{lead}:', a step says what it runs only there"
                              + (" (its input goes under with:)" if lead == "action" else "")])
        return
    with_ = step.get("with")
    if with_ is not None and not isinstance(with_, dict):
        return  # the schema pass reports the type of with
    if lead == "run":
        _run_step(ctx, path, step, with_ or {})
    else:
        _action_step(ctx, path, step, with_ or {}, custom)


def _run_step(ctx: DocContext, path: Path, step: dict[str, Any], with_: dict[str, Any]) -> None:
    owner = where(ctx.doc.data, path)
    bad = False
    for key in with_:
        if key not in _RUN_WITH_KEYS:
            ctx.report(path + ("with", key), "unknown-key", at_key=True, key=key, where=f"'with' of {owner}",
                       notes=["a run: step takes only shell, shell_args and shell_packages under with:; "
                              "for another step type use action:"])
            bad = True
        elif key in step:
            ctx.report(path + ("with", key), "conflicting-keys", at_key=True, where=owner,
                       first=key, second=f"with.{key}")
            bad = True
    if bad:
        return
    entries = [("command", step["run"], ("run",))] + [(k, v, ("with", k)) for k, v in with_.items()]
    step.pop("with", None)
    replace_key(ctx.doc, path, step, "run", entries)


def _action_step(ctx: DocContext, path: Path, step: dict[str, Any], with_: dict[str, Any],
                 custom: frozenset[str]) -> None:
    action = step["action"]
    if not isinstance(action, str) or not action.strip():
        return  # the schema pass reports it
    from dagu.compiler.actions import ActionProblem, normalize_action  # only files with actions pay for it

    name = action.strip()
    try:
        entries = None if "@" in name else normalize_action(name, with_, custom)
    except ActionProblem as problem:
        _report_problem(ctx, path, step, problem)
        return
    if entries is None:
        _report_unknown_action(ctx, path, name, custom)
        return
    step.pop("with", None)
    replace_key(ctx.doc, path, step, "action", entries)


def _report_problem(ctx: DocContext, path: Path, step: dict[str, Any], problem: ActionProblem) -> None:
    data = ctx.doc.data
    fields = dict(problem.fields)
    notes = fields.pop("notes", [])
    rel = problem.rel if "with" in step else ("action",)
    place = path + rel
    name = step["action"].strip()
    if problem.code == "missing-key":
        ctx.report(place, "missing-key", where=f"'with' of {where(data, path)}", key=fields["key"],
                   notes=notes or [f"{name} needs with.{fields['key']}"])
    elif problem.code == "unknown-key":
        ctx.report(place, "unknown-key", at_key=True, key=fields["key"], where=f"'with' of {where(data, path)}",
                   notes=notes)
    elif problem.code == "wrong-type":
        ctx.report(place, "wrong-type", where=where(data, path + rel), expected=fields["expected"],
                   actual=show_value(node_at(data, place)), notes=notes)
    elif problem.code == "invalid-value":
        ctx.report(place, "invalid-value", where=where(data, place), allowed=fields["allowed"],
                   value=fields["value"], notes=notes or [f"{name} sets it; leave it out"])
    else:
        ctx.report(place, problem.code, where=where(data, place), notes=notes, **fields)


def _report_unknown_action(ctx: DocContext, path: Path, name: str, custom: frozenset[str]) -> None:
    from dagu.compiler.actions import UPSTREAM_ONLY, supported_actions

    known = supported_actions()
    notes = []
    if "@" in name:
        notes.append("action packages (name@version) are not supported by this dagu; "
                     "call a DAG with action: dag.run instead")
    elif name in UPSTREAM_ONLY:
        notes.append(f"upstream Dagu has '{name}', but this dagu has no step type for it yet")
    else:
        import difflib  # here only: a misspelling needs it
        close = difflib.get_close_matches(name, known + sorted(custom), n=1, cutoff=0.6)
        if close:
            notes.append(f"did you mean '{close[0]}'?")
    notes.append("supported actions: " + ", ".join(known))
    notes.append("an action may also be a step type (e.g. docker, ssh, http) or a name under step_types:")
    ctx.report(path + ("action",), "unknown-action", value=repr(name), notes=notes)


def _consts(ctx: DocContext, raw: Any) -> dict[str, str]:
    """`consts:` as NAME -> text; earlier consts are inlined into later ones."""
    found: dict[str, str] = {}
    if not isinstance(raw, list):
        return found  # absent, or a shape the schema pass reports
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or len(item) != 1:
            continue
        ((name, value),) = item.items()
        if not isinstance(name, str) or not CONST_NAME.match(name) or value is None \
                or not isinstance(value, (str, int, float, bool)):
            continue
        if name in found:
            ctx.report(("consts", i, name), "invalid-format", at_key=True, where="consts",
                       detail=f"'{name}' is declared twice", notes=["each const is declared once"])
            continue
        text = scalar_text(value)
        found[name] = CONST_REF.sub(lambda m: found.get(m.group(1), m.group(0)), text)
    return found


def inline_consts(ctx: DocContext, path: Path, text: str) -> str:
    """`text` with every ${consts.NAME} replaced by its value; unknown names are errors."""
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in ctx.consts:
            return ctx.consts[name]
        source, doc, where = ctx.where(path)
        line, col = source.locate_in_scalar(span_of(doc, where), text, match.start(), len(match.group(0)))
        import difflib  # here only: a misspelling needs it
        close = difflib.get_close_matches(name, list(ctx.consts), n=1, cutoff=0.6)
        notes = [f"did you mean '{close[0]}'?"] if close else [
            f"declare it: consts: [{{{name}: value}}]" if not ctx.consts
            else "declared consts: " + ", ".join(ctx.consts)]
        ctx.reporter.at(source, line, col, "unknown-const", name=name, notes=notes, width=len(match.group(0)))
        return ""

    return CONST_REF.sub(replace, text)


def _secrets(ctx: DocContext, raw: Any) -> None:
    """`secrets: [NAME, ...]`: each name is a managed secret, exposed as the variable NAME."""
    if not isinstance(raw, list):
        return
    for i, item in enumerate(raw):
        if isinstance(item, str) and _ENV_NAME.match(item):  # other strings: the schema pass says why
            raw[i] = {"name": item, "ref": item}
            for key in ("name", "ref"):
                copy_spans(ctx.doc, ("secrets", i), ("secrets", i, key), item)
