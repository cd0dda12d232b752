"""Custom step types (`step_types:`): expanded into built-in steps at compile time.

A definition names a built-in `type`, a JSON Schema for the step's `with:`
input and a `template` of step fields.  A step using it is checked against the
schema here, where errors can point at the step's own `with:` keys, and the
plan receives the expanded built-in step: the runtime never sees custom types.
Types may also come from the directory's base config (base_config.py); a
problem with such a definition is reported in base.yaml.

Templates take upstream's two forms: a string may hold `{{ .input.PATH }}`
(the input value as text), and a mapping `{$input: PATH}` inserts the value
unchanged (a list stays a list).  Anything else between `{{ }}` is refused at
the definition, since a silent partial rendering would run the wrong command.
"""

from __future__ import annotations

import json
import re

from dagu.compiler.context import DocContext
from dagu.compiler.diagnostics import span_of

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any

_PLACEHOLDER = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_INPUT_PATH = re.compile(r"^\.input((?:\.[A-Za-z_][A-Za-z0-9_-]*)*)$")
_MISSING = object()


def _lookup(value: Any, dotted: str) -> Any:
    for key in [k for k in dotted.split(".") if k]:
        if not isinstance(value, dict) or key not in value:
            return _MISSING
        value = value[key]
    return value


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def _with_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Fill `default`s of object properties, recursively, as upstream does before expanding."""
    if not isinstance(value, dict) or not isinstance(schema.get("properties"), dict):
        return value
    out = dict(value)
    for name, sub in schema["properties"].items():
        if not isinstance(sub, dict):
            continue
        if name not in out and "default" in sub:
            out[name] = sub["default"]
        if name in out:
            out[name] = _with_defaults(sub, out[name])
    return out


class _Problem(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _render(template: Any, inputs: dict[str, Any]) -> Any:
    if isinstance(template, dict):
        if set(template) == {"$input"} and isinstance(template["$input"], str):
            found = _lookup(inputs, template["$input"])
            if found is _MISSING:
                raise _Problem(f"{{$input: {template['$input']}}} names no input value")
            return found
        return {k: _render(v, inputs) for k, v in template.items()}
    if isinstance(template, list):
        return [_render(v, inputs) for v in template]
    if isinstance(template, str) and "{{" in template:
        def one(m: re.Match) -> str:
            expr = _INPUT_PATH.match(m.group(1))
            if expr is None:
                raise _Problem(f"template expression {m.group(0)!r} is not supported: "
                               "write {{ .input.NAME }} or use {$input: NAME}")
            found = _lookup(inputs, expr.group(1))
            if found is _MISSING:
                raise _Problem(f"{m.group(0)!r} names no input value")
            return _text(found)
        return _PLACEHOLDER.sub(one, template)
    return template


def _schema_note(ctx: DocContext, name: str) -> str:
    """Where the type's input_schema is written: this file, or the base config it came from."""
    source, doc, where = ctx.where(("step_types", name, "input_schema"))
    span = doc.key_spans.get(where) or span_of(doc, where)
    place = f"{source.path}:{span.line}" if source is not ctx.source else f"line {span.line}"
    return f"the input schema is under step_types: {name}: input_schema ({place})"


def expand(ctx: DocContext, raw: dict[str, Any], path: tuple, name: str, definition: Any) -> dict[str, Any] | None:
    """The raw step a custom-type step expands to, or None once its problems are reported."""
    if not isinstance(definition, dict):
        return None  # the schema check reports the definition itself
    schema = definition.get("input_schema") if isinstance(definition.get("input_schema"), dict) else {}
    given = raw.get("with", raw.get("config", {}))
    if given is None:
        given = {}
    inputs = _with_defaults(schema, given)
    ok = True
    if schema:
        from jsonschema import Draft202012Validator  # only files that define custom types pay for it

        with_key = "with" if "with" in raw else "config" if "config" in raw else None
        note = _schema_note(ctx, name)
        for error in sorted(Draft202012Validator(schema).iter_errors(inputs), key=lambda e: list(e.absolute_path)):
            where = path + ((with_key,) + tuple(error.absolute_path) if with_key else ("type",))
            ctx.report(where, "custom-type-input", type=name, reason=error.message, notes=[note])
            ok = False
    if not ok:
        return None
    try:
        body = _render(definition.get("template") or {}, inputs)
    except _Problem as problem:
        ctx.report(("step_types", name, "template"), "custom-type-template", type=name, reason=problem.message)
        return None
    if not isinstance(body, dict):
        return None
    expanded = {k: v for k, v in body.items() if k != "type"}
    for key, value in raw.items():  # the step's own fields (id, depends, retry_policy, ...) win
        if key not in ("type", "with", "config"):
            expanded[key] = value
    expanded["type"] = definition.get("type", "command")
    if "description" not in expanded and isinstance(definition.get("description"), str):
        expanded["description"] = definition["description"]
    return expanded


def check_definitions(ctx: DocContext, definitions: dict[str, Any]) -> None:
    """A custom type built on a type this build cannot run is refused at its definition, once,
    rather than at each step that uses it (a base-config definition is reported in base.yaml)."""
    from dagu.compiler.step_checks import report_type
    from dagu.compiler.step_types import canonical

    for name, definition in definitions.items():
        if not isinstance(definition, dict) or not isinstance(definition.get("type"), str):
            continue  # no type means command; another shape is reported by the schema pass
        report_type(ctx, ("step_types", name, "type"), definition["type"], canonical(definition["type"]))

