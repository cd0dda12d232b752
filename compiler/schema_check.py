"""The shape pass: validate a document against spec/dag.schema.json and say it plainly.

jsonschema's own messages ("... is not valid under any of the given schemas")
tell a user nothing; this module turns each validation error into one of the
catalogue's diagnostics, at the offending key or value, with a fix: the
snake_case spelling of a camelCase key, the nearest valid key, the accepted
types.  For `anyOf` it picks the alternative whose JSON type matches the value
(the schema is written so that alternatives differ by type) and reports that
alternative's problems instead of all of them.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable

from dagu.compiler.context import DocContext

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

_TYPE_WORDS = {
    "string": "a string", "integer": "an integer", "number": "a number", "boolean": "true or false",
    "array": "a list", "object": "a mapping", "null": "empty",
}


def load_schema(name: str = "dag") -> dict[str, Any]:
    """A schema shipped in dagu.spec (package data, so it works from the frozen binary)."""
    return _load_schema(name)  # one cache entry per schema, however the name is passed


@functools.lru_cache(maxsize=None)
def _load_schema(name: str) -> dict[str, Any]:
    from importlib import resources  # here: a valid file never needs the schema (5 ms of imports)

    text = (resources.files("dagu.spec") / f"{name}.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


@functools.lru_cache(maxsize=None)
def _validator(name: str = "dag") -> Draft202012Validator:
    from jsonschema import Draft202012Validator  # ~50 ms to import: only for documents that need it

    return Draft202012Validator(load_schema(name))


@functools.lru_cache(maxsize=None)
def step_keys() -> frozenset[str]:
    """The keys a step may have, from the schema (one source of truth)."""
    return frozenset(load_schema()["$defs"]["step"].get("properties", {}))


@functools.lru_cache(maxsize=None)
def _duration_patterns() -> frozenset[str]:
    """The schema's duration patterns: values.parse_duration reports those values better."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("pattern"), str):
                found.append(node["pattern"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(load_schema()["$defs"].get("duration", {}))
    return frozenset(found)


# Steps made only of these keys, with these types, are valid by the schema's own
# rules (tests/compiler/test_schema_fast_path.py checks that against
# jsonschema), so validating them one by one through jsonschema, which is
# most of the compile time of a 10,000-step file, can be skipped.
def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


_SIMPLE_STEP_KEYS = {
    "id": lambda v: isinstance(v, str),
    "name": lambda v: isinstance(v, str),
    "description": lambda v: isinstance(v, str),
    "command": lambda v: isinstance(v, str) or (_is_str_list(v) and bool(v)),
    "script": lambda v: isinstance(v, str),
    "output": lambda v: isinstance(v, str),
    "working_dir": lambda v: isinstance(v, str),
    "depends": lambda v: isinstance(v, str) or _is_str_list(v),
}


def is_simple_step(step: Any) -> bool:
    """True for a step the schema surely accepts (plain keys of plain types)."""
    if isinstance(step, str):
        return True
    if not isinstance(step, dict):
        return False
    for key, value in step.items():
        check = _SIMPLE_STEP_KEYS.get(key)
        if check is None or not check(value):
            return False
    return True


# Top-level keys that, with these types, the schema surely accepts.
_SIMPLE_DAG_KEYS = {
    "name": lambda v: isinstance(v, str),
    "description": lambda v: isinstance(v, str),
    "group": lambda v: isinstance(v, str),
    "type": lambda v: v == "chain" or v == "graph",
}


def is_simple_document(data: Any) -> bool:
    """True for a document the schema surely accepts: simple steps and plain top-level keys.

    Such a document needs no jsonschema at all (not even its import), which
    is the common small workflow and the bulk of a generated large one.
    """
    if not isinstance(data, dict) or "steps" not in data:
        return False
    for key, value in data.items():
        if key == "steps":
            continue
        check = _SIMPLE_DAG_KEYS.get(key)
        if check is None or not check(value):
            return False
    steps = data["steps"]
    if isinstance(steps, list):
        return all(map(is_simple_step, steps))
    if isinstance(steps, dict):
        return all(isinstance(s, dict) and is_simple_step(s) for s in steps.values())
    return False


def _without_simple_steps(data: Any) -> tuple[Any, list[int] | None]:
    """The document with surely-valid steps left out, and how to map list indexes back."""
    if not isinstance(data, dict):
        return data, None
    steps = data.get("steps")
    if isinstance(steps, list):
        kept = [i for i, s in enumerate(steps) if not is_simple_step(s)]
        if len(kept) == len(steps):
            return data, None
        return {**data, "steps": [steps[i] for i in kept]}, kept
    if isinstance(steps, dict):
        rest = {k: v for k, v in steps.items() if not is_simple_step(v)}
        return ({**data, "steps": rest}, None) if len(rest) != len(steps) else (data, None)
    return data, None


def check_document(ctx: DocContext, simple: bool | None = None) -> None:
    """Report every shape problem of the document (each place once).

    `simple`: is_simple_document's answer when the caller already has it.
    """
    if simple if simple is not None else is_simple_document(ctx.doc.data):
        return
    seen: set[tuple] = set()
    data, kept = _without_simple_steps(ctx.doc.data)
    for error in _validator().iter_errors(data):
        if kept is not None:
            _remap_step_index(error, kept)
        for path, code, key, fields in _translate(error, ctx.doc.data):
            mark = (path, code, key, fields.get("key"))
            if mark in seen:
                continue
            seen.add(mark)
            ctx.report(path, code, at_key=key, **fields)


def _remap_step_index(error: ValidationError, kept: list[int]) -> None:
    """Point an error found in the filtered steps list back at the original step.

    An error's absolute path is its parents' path plus its own relative path,
    so the step index is rewritten in the one error whose own segment holds it.
    """
    for err in [error, *_descendants(error)]:
        depth = len(err.parent.absolute_path) if err.parent is not None else 0
        rel = err.relative_path
        pos = 1 - depth
        if 0 <= pos < len(rel) and err.absolute_path[0] == "steps" and isinstance(rel[pos], int):
            rel[pos] = kept[rel[pos]]


def _descendants(error: ValidationError) -> list[ValidationError]:
    out = []
    for sub in error.context or ():
        out.append(sub)
        out.extend(_descendants(sub))
    return out


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def show_value(value: Any) -> str:
    kind = _kind(value)
    if kind in ("object", "array"):
        return _TYPE_WORDS[kind]
    if kind == "null":
        return "an empty value"
    text = json.dumps(value) if kind == "string" else str(value).lower() if kind == "boolean" else str(value)
    if len(text) > 40:
        text = text[:37] + "...\""
    return f"{_TYPE_WORDS[kind].split()[-1]} {text}"


def _types_word(types: Iterable[str]) -> str:
    words = []
    for t in types:
        w = _TYPE_WORDS.get(t, t)
        if w not in words:
            words.append(w)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def where(data: Any, path: tuple) -> str:
    """Name a place the way the user thinks of it: `retry_policy.limit of step 'build'`."""
    prefix = ""
    rest = list(path)
    if len(path) >= 2 and path[0] == "steps":
        step, n = _step_at(data, path)
        prefix = f"step '{step}'"
        rest = list(path[n:])
    elif len(path) >= 2 and path[0] == "handler_on":
        prefix = f"handler '{path[1]}'"
        rest = list(path[2:])
    text = ""
    for part in rest:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    if prefix and text:
        return f"'{text}' of {prefix}"
    if prefix:
        return prefix
    return f"'{text}'" if text else "the workflow"


def _step_at(data: Any, path: tuple) -> tuple[str, int]:
    """The step a path points into, and how many path items address the step itself."""
    node = data.get("steps") if isinstance(data, dict) else None
    n = 1
    for part in path[1:]:
        if isinstance(node, dict) and n == 1:  # steps as a map: the key is the id
            return str(part), 2
        if not isinstance(node, list) or not isinstance(part, int) or part >= len(node):
            break
        node = node[part]
        n += 1
        if isinstance(node, dict):
            return str(node.get("id") or node.get("name") or f"#{path[1] + 1}"), n
        if not isinstance(node, list):
            break
    return f"#{path[1] + 1 if len(path) > 1 and isinstance(path[1], int) else '?'}", n


def _unknown_key(path: tuple, key: str, allowed: list[str], data: Any, mapping: Any = None) -> tuple:
    from dagu.compiler.legacy import snake_case, v2_name  # legacy.py imports this module

    place = where(data, path)
    new = v2_name(key, allowed)
    if new is not None:  # a 1.x key that legacy.py left: its v2 key is set too, or it sits out of its reach
        code = "camel-case-key" if snake_case(key) == new and key.lower() != new else "legacy-key"
        both = isinstance(mapping, dict) and new in mapping
        note = f"'{new}' is set here too: keep one of them, spelled '{new}'" if both else f"rename it to '{new}'"
        return (path + (key,), code, True, {"key": key, "new": new, "notes": [note]})
    import difflib  # here: only a file with a problem needs it

    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        notes = [f"did you mean '{close[0]}'?"]
    else:
        shown = ", ".join(allowed[:12]) + (", ..." if len(allowed) > 12 else "")
        notes = [f"valid keys here: {shown}"]
    return (path + (key,), "unknown-key", True, {"key": key, "where": place, "notes": notes})


def translate_error(error: ValidationError, data: Any) -> list[tuple]:
    """(path, code, at_key, fields) for each problem one jsonschema error stands for.

    `data` is the whole document: the error's absolute path must lead into it
    (step_checks.py prefixes the errors of a step's `with:` block so).
    """
    return _translate(error, data)


def _translate(error: ValidationError, data: Any) -> list[tuple]:
    """(path, code, at_key, fields) for each problem one jsonschema error stands for."""
    path = tuple(error.absolute_path)
    v, instance = error.validator, error.instance
    if v in ("anyOf", "oneOf"):
        return _translate_alternatives(error, data)
    if v == "additionalProperties":
        props = error.schema.get("properties", {})
        patterns = [re.compile(p) for p in error.schema.get("patternProperties", {})]
        allowed = list(props)
        return [
            _unknown_key(path, k, allowed, data, instance)
            for k in instance
            if k not in props and not any(p.search(k) for p in patterns)
        ]
    place = where(data, path)
    if v == "type":
        expected = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        return [(path, "wrong-type", False, {"where": place, "expected": _types_word(expected), "actual": show_value(instance)})]
    if v in ("enum", "const"):
        allowed = error.validator_value if v == "enum" else [error.validator_value]
        import difflib

        close = difflib.get_close_matches(str(instance), [str(a) for a in allowed], n=1, cutoff=0.6)
        return [(path, "invalid-value", False, {
            "where": place, "allowed": ", ".join(json.dumps(a) for a in allowed), "value": show_value(instance),
            "notes": [f"did you mean {close[0]!r}?"] if close else []})]
    if v == "required":
        missing = [k for k in error.validator_value if isinstance(instance, dict) and k not in instance]
        return [(path, "missing-key", False, {"where": place, "key": k}) for k in missing]
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        word = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "more than",
                "exclusiveMaximum": "less than"}[v]
        return [(path, "out-of-range", False, {"where": place, "bound": f"{word} {error.validator_value}", "value": show_value(instance)})]
    if v == "pattern" and error.validator_value in _duration_patterns():
        return []  # values.parse_duration reports it, with the parsed reason
    detail = error.message
    description = error.schema.get("description") if isinstance(error.schema, dict) else None
    notes = [description] if isinstance(description, str) else []
    if v == "pattern":
        detail = f"{show_value(instance)} does not have the expected form"
    return [(path, "invalid-format", False, {"where": place, "detail": detail, "notes": notes})]


def _translate_alternatives(error: ValidationError, data: Any) -> list[tuple]:
    """Report the problems of the alternative that has the value's type, or a type error."""
    by_branch: dict[int, list[ValidationError]] = {}
    for sub in error.context or ():
        by_branch.setdefault(sub.relative_schema_path[0], []).append(sub)
    expected: list[str] = []
    candidates = []
    for branch in range(len(error.validator_value)):
        subs = by_branch.get(branch, [])
        type_errors = [s for s in subs if s.validator == "type" and not s.relative_path]
        if type_errors:
            for s in type_errors:
                vv = s.validator_value
                expected.extend(vv if isinstance(vv, list) else [vv])
        else:
            candidates.append(subs)
    path = tuple(error.absolute_path)
    if candidates:
        chosen = min(candidates, key=len) if all(candidates) else candidates[0]
        out: list[tuple] = []
        for sub in chosen:
            out.extend(_translate(sub, data))
        return out  # may be empty: another pass reports that value better
    return [(path, "wrong-type", False, {"where": where(data, path), "expected": _types_word(expected or ["a valid value"]),
             "actual": show_value(error.instance)})]
