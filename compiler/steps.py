"""Steps: flatten the accepted step layouts and build each step with its defaults.

`steps:` may be a list (of step objects, bare command strings, and nested
lists that run in parallel inside a chain) or a map of id -> step.  Flattening
gives every step an id and its position; a chain adds the implied
dependencies.  Graph checks happen later, in `graph.py`, on these drafts.
"""

from __future__ import annotations

import re
import signal
from dataclasses import field
from collections.abc import Mapping

from dagu.spec.records import dataclass
from dagu.compiler.context import DocContext, Path, scalar_text
from dagu.compiler.expressions import is_plain
from dagu.compiler.step_checks import (check_call, check_config, check_ignored_keys, check_literal_secrets,
                                       report_type)
from dagu.compiler.step_types import APPROVAL, APPROVAL_CONFIG_SCHEMA, entry, is_known, step_type
from dagu.compiler import values
from dagu.spec.plan import Call, ContinueOn, EnvVar, Parallel, Route, Step

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any

STEP_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")  # a map key, or a name that can stand as the id
WRITTEN_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")  # an `id:` (spec 009), at most ID_MAX_BYTES
ID_MAX_BYTES = 40
NAME_MAX_BYTES = 255
RESERVED_IDS = frozenset({"env", "params", "args", "stdout", "stderr", "output", "outputs"})  # any case

# Keys a step uses directly; every other key it carries goes to Step.options.
_DIRECT_KEYS = frozenset({
    "id", "name", "description", "type", "command", "script", "shell", "working_dir", "env",
    "depends", "output", "stdout", "stderr", "preconditions", "continue_on", "retry_policy",
    "repeat_policy", "timeout_sec", "signal_on_stop", "mail_on_error", "call", "params",
    "parallel", "value", "routes", "with", "config",
})

_SIGNALS = frozenset(s.name for s in signal.Signals)


@dataclass
class StepDraft:
    """A step found in the file, before its graph is checked."""

    index: int
    path: Path
    id: str
    raw: dict[str, Any]
    explicit_id: bool
    name: str | None = None  # `name:` as text, trimmed; None when missing or blank
    depends: list[tuple[str, Path]] = field(default_factory=list)  # declared, with where
    declares_depends: bool = False  # `depends:` is there and not null (`depends: []` declares none)
    implied: list[str] = field(default_factory=list)  # from the chain layout


@dataclass
class StepDefaults:
    """DAG-level values a step inherits unless it sets its own."""

    shell: tuple[str, ...] = ()
    working_dir: list[Any] | None = None
    retry_policy: Any = None
    max_output_size: int = 1048576
    chain: bool = True
    # DAG-level blocks that give a step type its defaults (`smtp:`, `ssh:`, `s3:`, ...), by DAG key:
    # a step of a type whose catalogue line names the key starts from that block, its own `with:` winning.
    type_defaults: Mapping[str, Any] = field(default_factory=dict)


def flatten(ctx: DocContext, raw: Any, chain: bool) -> list[StepDraft]:
    """Every step of `steps:` in file order, with ids and chain dependencies."""
    drafts: list[StepDraft] = []
    if isinstance(raw, dict):
        previous: list[str] = []
        for key, body in raw.items():
            body = body if isinstance(body, dict) else {"command": body} if isinstance(body, (str, list)) else {}
            draft = _draft(ctx, len(drafts), ("steps", key), body, default_id=str(key), explicit=True)
            if chain:
                draft.implied = previous
            previous = [draft.id]
            drafts.append(draft)
        return drafts
    if not isinstance(raw, list):
        return drafts
    previous = []
    for i, item in enumerate(raw):
        group = item if isinstance(item, list) else [item]
        current = []
        for j, member in enumerate(group):
            path = ("steps", i, j) if isinstance(item, list) else ("steps", i)
            body = {"command": member} if isinstance(member, str) else member if isinstance(member, dict) else None
            if body is None:
                continue
            draft = _draft(ctx, len(drafts), path, body, default_id=None, explicit=False)
            if chain:
                draft.implied = list(previous)
            current.append(draft.id)
            drafts.append(draft)
        if current:
            previous = current
    return drafts


def declares_depends(raw: Any) -> bool:
    """Whether any step of `steps:` sets a non-null `depends` (what makes an untyped DAG a graph)."""
    bodies = raw.values() if isinstance(raw, dict) else raw if isinstance(raw, list) else ()
    for item in bodies:
        for body in item if isinstance(item, list) else (item,):
            if isinstance(body, dict) and body.get("depends") is not None:
                return True
    return False


def step_name(body: dict[str, Any]) -> str | None:
    """A step's `name:` as text, trimmed (spec 009); None when it is missing or blank."""
    name = body.get("name")
    if name is None:
        return None
    return (name if type(name) is str else scalar_text(name)).strip() or None


def _draft(ctx: DocContext, index: int, path: Path, body: dict[str, Any], default_id: str | None,
           explicit: bool) -> StepDraft:
    sid = body.get("id")
    name = step_name(body)
    explicit = explicit or sid is not None
    if sid is None:
        if default_id is not None:
            sid = default_id
        elif name is not None and STEP_ID.match(name):
            sid = name
        else:
            sid = f"cmd_{index + 1}"
    sid = sid if type(sid) is str else scalar_text(sid)
    draft = StepDraft(index=index, path=path, id=sid.strip(), raw=body, explicit_id=explicit, name=name)
    deps = body.get("depends")
    draft.declares_depends = deps is not None
    if isinstance(deps, str):
        draft.depends = [(deps, path + ("depends",))]
    elif isinstance(deps, list):
        draft.depends = [(scalar_text(d), path + ("depends", k)) for k, d in enumerate(deps) if d is not None]
    return draft


def _templates_in(ctx: DocContext, path: Path, value: Any, owner: str) -> Any:
    """Executor input with every expression-bearing string pre-parsed as {"$expr": parts}."""
    if isinstance(value, str):
        if is_plain(value):
            return value
        parts = ctx.template(path, value, owner)
        if "${consts." in value and all(isinstance(p, str) for p in parts):
            return "".join(parts)  # only consts: a plain string, as if written out
        return {"$expr": parts}
    if isinstance(value, dict):
        return {k: _templates_in(ctx, path + (k,), v, owner) for k, v in value.items()}
    if isinstance(value, list):
        return [_templates_in(ctx, path + (i,), v, owner) for i, v in enumerate(value)]
    return value


_NO_CONTINUE_ON = ContinueOn()  # frozen: one shared default


def build_step(ctx: DocContext, draft: StepDraft, depends: tuple[str, ...], defaults: StepDefaults,
               custom_types: Mapping[str, Any], owner: str | None = None) -> Step:
    """The plan's Step for one draft, defaults applied and expressions parsed.

    Most steps set a handful of keys, so each optional pass runs only when its
    key is there (what it would return for a missing key is written out
    instead), and paths are built only for the keys present.  The passes run
    in the same order either way, so diagnostics and references keep theirs.
    """
    raw, path = draft.raw, draft.path
    owner = owner or draft.id
    stype = step_type(raw)
    custom = stype in custom_types and not is_known(stype)
    if custom:  # a step_types: name: expand it here
        from dagu.compiler.custom_types import expand

        expanded = expand(ctx, raw, path, stype, custom_types[stype])
        if expanded is None:  # reported; build the rest of the step without follow-on errors
            expanded = {**{k: v for k, v in raw.items() if k not in ("type", "with")}, "type": "noop"}
        raw = expanded
        stype = step_type(raw)
    get = raw.get
    template = ctx.template
    approval = _check_type(ctx, draft, raw, stype, custom, defaults)
    if approval is not None:
        stype = "noop"

    command_raw = get("command")
    if isinstance(command_raw, list):
        command = tuple(template(path + ("command", i), c, owner) for i, c in enumerate(command_raw))
    elif command_raw is not None:
        command = (template(path + ("command",), command_raw, owner),)
    else:
        command = ()
    if stype == "command" and not command and get("script") is None and "exec" not in raw \
            and "run" not in raw and "action" not in raw and not _has_unknown_keys(raw):
        ctx.report(path, "empty-step", step=draft.id,
                   notes=["add `command:` (or `script:`), or `call:` to run another DAG"])

    output = get("output")
    if isinstance(output, dict):
        output = output.get("name")
    signal_name = get("signal_on_stop")
    if isinstance(signal_name, str):
        canonical = signal_name.upper() if signal_name.upper().startswith("SIG") else "SIG" + signal_name.upper()
        if canonical not in _SIGNALS:
            ctx.report(path + ("signal_on_stop",), "invalid-signal", value=repr(signal_name),
                       notes=["common choices: SIGTERM, SIGINT, SIGHUP, SIGKILL"])
        signal_name = canonical

    call = None
    if "call" in raw and isinstance(raw["call"], str):
        call = Call(dag=raw["call"], params=_call_params(ctx, path + ("params",), get("params"), owner))
    parallel = _parallel(ctx, path + ("parallel",), raw["parallel"], owner) if "parallel" in raw else None

    routes = []
    raw_routes = get("routes")
    if isinstance(raw_routes, dict):
        for pattern, targets in raw_routes.items():
            tlist = targets if isinstance(targets, list) else [targets]
            routes.append(Route(
                match=values.matcher(ctx, path + ("routes", pattern), pattern, owner, at_key=True),
                targets=tuple(scalar_text(x) for x in tlist if x is not None),
            ))

    config_raw = raw["with"] if "with" in raw else get("config")
    line = entry(stype)
    literal = line is not None and line.braced_only  # only ${...} is ours (a Go template's {{ $x }})
    if literal:
        from dagu.compiler.step_config_checks import braced_only
    config = (braced_only if literal else _templates_in)(
        ctx, path + (("with" if "with" in raw else "config"),), config_raw, owner) \
        if isinstance(config_raw, dict) else {}
    dag_key = _dag_defaults_key(stype)
    if dag_key and isinstance(defaults.type_defaults.get(dag_key), dict):
        config = {**_templates_in(ctx, (dag_key,), defaults.type_defaults[dag_key], owner), **config}
    options = {} if raw.keys() <= _DIRECT_KEYS else \
        {k: _templates_in(ctx, path + (k,), v, owner) for k, v in raw.items() if k not in _DIRECT_KEYS}
    if approval is not None:  # hitl/approval/wait: a noop that waits, its with: is the approval rule
        options["approval"] = _approval_rule(ctx, draft, options.get("approval"), config)
        config = {}

    retry = values.retry_policy(ctx, path + ("retry_policy",), raw["retry_policy"]) \
        if "retry_policy" in raw else defaults.retry_policy
    timeout = values.parse_duration(ctx, path + ("timeout_sec",), raw["timeout_sec"]) \
        if "timeout_sec" in raw else None
    name = draft.name if draft.name is not None else step_name(raw) or draft.id
    description = get("description")
    script = get("script")
    working_dir = get("working_dir")
    stdout, stderr, value = get("stdout"), get("stderr"), get("value")
    return Step(
        id=draft.id,
        name=name,
        type=stype,
        description=description if isinstance(description, str) else None,
        command=command,
        script=(_braced_parts(ctx, path + ("script",), script, owner) if literal else
                template(path + ("script",), script, owner)) if script is not None else None,
        shell=(values.shell_words(ctx, path + ("shell",), raw["shell"]) if "shell" in raw else ()) or defaults.shell,
        working_dir=template(path + ("working_dir",), working_dir, owner) if working_dir is not None
        else defaults.working_dir,
        env=values.env_entries(ctx, path + ("env",), raw["env"], owner) if "env" in raw else (),
        depends=depends,
        output=output if isinstance(output, str) else None,
        stdout=template(path + ("stdout",), stdout, owner) if stdout is not None else None,
        stderr=template(path + ("stderr",), stderr, owner) if stderr is not None else None,
        preconditions=values.conditions(ctx, path + ("preconditions",), raw["preconditions"], owner)
        if "preconditions" in raw else (),
        continue_on=values.continue_on(ctx, path + ("continue_on",), raw["continue_on"], owner)
        if "continue_on" in raw else _NO_CONTINUE_ON,
        retry_policy=retry,
        repeat_policy=values.repeat_policy(ctx, path + ("repeat_policy",), raw["repeat_policy"], owner)
        if "repeat_policy" in raw else None,
        timeout_sec=timeout,
        signal_on_stop=signal_name if isinstance(signal_name, str) else "SIGTERM",
        mail_on_error=bool(get("mail_on_error", False)),
        max_output_size=defaults.max_output_size,
        call=call,
        parallel=parallel,
        value=template(path + ("value",), value, owner) if value is not None else None,
        routes=tuple(routes),
        config=config,
        options=options,
    )


def _braced_parts(ctx: DocContext, path: Path, value: Any, owner: str) -> list:
    from dagu.compiler.step_config_checks import braced_only

    text = value if isinstance(value, str) else scalar_text(value)
    parsed = braced_only(ctx, path, text, owner)
    return parsed["$expr"] if isinstance(parsed, dict) else ([parsed] if parsed else [])


def _dag_defaults_key(stype: str) -> str | None:
    """The DAG-level key (smtp, ssh, ...) whose block a step of this type starts from, if any."""
    line = entry(stype)
    return line.dag_defaults if line is not None else None


def _check_type(ctx: DocContext, draft: StepDraft, raw: dict[str, Any], stype: str, custom: bool,
                defaults: StepDefaults) -> dict | None:
    """Report what the step's type does not allow; the step's `with:` when it is an approval step.

    A custom type's base is checked at its step_types: entry (custom_types.check_definitions),
    so its steps are not told again.
    """
    path = draft.path
    if "action" in raw or "run" in raw:
        return None  # a run:/action: the spelling pass could not rewrite: reported there
    if stype == APPROVAL:
        check_config(ctx, path, raw, APPROVAL_CONFIG_SCHEMA, str(raw.get("type")), draft.id)
        line = entry("noop")
        check_ignored_keys(ctx, path, raw, line, str(raw.get("type")), draft.id)  # type: ignore[arg-type]
        given = raw["with"] if "with" in raw else raw.get("config")
        return given if isinstance(given, dict) else {}
    line = entry(stype)
    if line is None:
        if not custom:
            report_type(ctx, path + ("type",), raw.get("type"), stype)
        return None
    given_by_dag = defaults.type_defaults.get(line.dag_defaults) if line.dag_defaults else None
    check_config(ctx, path, raw, line.config_schema, stype, draft.id,
                 defaulted=frozenset(given_by_dag) if isinstance(given_by_dag, dict) else frozenset())
    check_ignored_keys(ctx, path, raw, line, stype, draft.id)
    with_key = "with" if "with" in raw else "config"
    check_literal_secrets(ctx, path + (with_key,), raw.get(with_key), line.config_schema, f"step '{draft.id}'")
    if line.check:
        from dagu.compiler.step_config_checks import run_check  # only types that name a check

        run_check(ctx, path, raw, line, draft.id)
    if line.name == "call":
        check_call(ctx, path, raw, draft.id)
    return None


def _approval_rule(ctx: DocContext, draft: StepDraft, own: Any, given: dict[str, Any]) -> dict[str, Any]:
    """The approval rule of an approval-type step: its `with:`, merged with a step-level `approval:`."""
    rule = dict(own) if isinstance(own, dict) else {}
    for key, value in given.items():
        if key in rule:
            ctx.report(draft.path + ("approval", key), "conflicting-keys", at_key=True, where=f"step '{draft.id}'",
                       first=f"with.{key}", second=f"approval.{key}",
                       notes=["an approval step takes its rule from with: or approval:, once"])
        rule[key] = value
    return rule


def _has_unknown_keys(raw: dict[str, Any]) -> bool:
    """True when the schema pass already flagged a key of this step (likely a misspelt command)."""
    from dagu.compiler.schema_check import step_keys

    return any(k not in step_keys() for k in raw)


def _call_params(ctx: DocContext, path: Path, raw: Any, owner: str) -> tuple:
    """Params passed to a sub-DAG, in any of the forms DAG params accept."""
    if isinstance(raw, (dict, list)):
        if isinstance(raw, list) and all(isinstance(x, str) for x in raw):
            raw = " ".join(raw)
        else:
            return values.env_entries(ctx, path, raw, owner)
    if isinstance(raw, str):
        declared = values.params(ctx, path, raw, owner)
        return tuple(EnvVar(name=p.name, value=p.default or []) for p in declared)
    return ()


def _parallel(ctx: DocContext, path: Path, raw: Any, owner: str) -> Parallel | None:
    """parallel: a list of items, an expression yielding a JSON list, or {items, max_concurrent}."""
    max_concurrent = 10
    items = raw
    items_path = path
    if isinstance(raw, dict):
        mc = raw.get("max_concurrent", 10)
        max_concurrent = mc if isinstance(mc, int) and not isinstance(mc, bool) else 10
        items = raw.get("items")
        items_path = path + ("items",)
    if isinstance(items, str):
        return Parallel(items_from=ctx.template(items_path, items, owner), max_concurrent=max_concurrent)
    if isinstance(items, list):
        _check_items(ctx, items_path, items)
        parsed = tuple(_templates_in(ctx, items_path + (i,), v, owner) for i, v in enumerate(items))
        return Parallel(items=parsed, max_concurrent=max_concurrent)
    return Parallel(max_concurrent=max_concurrent)


def _check_items(ctx: DocContext, path: Path, items: list[Any]) -> None:
    """Static parallel items are scalars or flat mappings of scalars (spec 018): a child gets each
    item as `$1` or as named params, and neither can hold a list or a mapping."""
    for i, item in enumerate(items):  # an item that is itself a list: the schema refuses it (wrong-type)
        if isinstance(item, dict):
            for key, value in item.items():
                if value is None or isinstance(value, (dict, list)):
                    what = "an empty value" if value is None else "a mapping" if isinstance(value, dict) else "a list"
                    ctx.report(path + (i, key), "invalid-parallel-item", what=f"{what} under '{key}'",
                               notes=["a mapping item's values are strings, numbers or booleans (they become params)"])
