"""What a step's type allows: a type this build runs, its `with:` input, the keys it reads, and `call:`.

Each check reports at the place the user wrote, so that a workflow this
build cannot run is refused by `dagu validate` (and `dagu dry`) instead of
failing at that step after the steps before it have had their side effects,
and so that no key is silently ignored by the run.  What a type reads and
accepts comes from its catalogue line (dagu.executors.catalog).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from dagu.compiler.context import DocContext, Path
from dagu.compiler.step_types import (
    APPROVAL, APPROVAL_TYPES, FORMAT_ONLY_TYPES, is_known, known_names, runnable_names,
)
from dagu.executors.catalog import TYPE_SPECIFIC_KEYS, StepType

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any

_LANDS = "this type becomes valid the day its executor lands (a line in dagu.executors.catalog)"


def _written(ctx: DocContext, path: Path) -> tuple[str, str] | None:
    """(key, value) as the user wrote the node at `path`: `action: http.request` for a rewritten action."""
    source, doc, where = ctx.where(path)
    key_span, span = doc.key_spans.get(where), doc.spans.get(where)
    if key_span is None or span is None:
        return None
    key = source.text[key_span.start:key_span.end].strip()
    value = source.text[span.start:span.end].strip().strip("'\"")
    return key, value


def runs_here_note() -> str:
    return f"types this build runs: {', '.join(runnable_names())} (and {', '.join(sorted(APPROVAL_TYPES))}, " \
           "which wait for a person's approval)"


def report_type(ctx: DocContext, path: Path, declared: Any, stype: str) -> bool:
    """Report a type this build cannot run at its `type:` (or `action:`) line; True when it runs here."""
    if not is_known(stype):
        import difflib  # here only: a misspelling needs it
        close = difflib.get_close_matches(stype, known_names(), n=1, cutoff=0.6)
        notes = [f"did you mean '{close[0]}'?"] if close else []
        ctx.report(path, "unknown-step-type", value=repr(declared), notes=notes + [runs_here_note()])
        return False
    if stype in FORMAT_ONLY_TYPES:
        written = _written(ctx, path)
        what = f"action '{written[1]}'" if written and written[0] == "action" else f"step type {declared!r}"
        ctx.report(path, "unsupported-step-type", what=what, notes=[runs_here_note(), _LANDS])
        return False
    return True


def check_config(ctx: DocContext, path: Path, raw: Mapping[str, Any], schema: Mapping[str, Any],
                 type_name: str, step_id: str, defaulted: frozenset[str] = frozenset()) -> None:
    """Check a step's `with:` (or `config:`) block against its type's schema, each error at its place.

    `defaulted`: keys the DAG-level defaults block (`smtp:`, `ssh:`, ...) gives, so the step need
    not repeat them even where the schema requires them."""
    with_key = "with" if "with" in raw else "config" if "config" in raw else None
    config = raw.get(with_key) if with_key else None
    required = [k for k in schema.get("required") or () if k not in defaulted]
    if required != list(schema.get("required") or ()):
        schema = {**schema, "required": required}
    if not isinstance(config, dict) or not config:
        if required and (config is None or config == {}):
            where = path + (with_key,) if with_key else path
            ctx.report(where, "missing-key", key=required[0], where=f"'{with_key or 'with'}' of step '{step_id}'",
                       notes=[f"type {type_name} needs {', '.join(required)} under with: (or in the DAG's defaults block)"])
        return  # absent or empty
    if schema.get("additionalProperties") is False and not schema.get("properties") and "patternProperties" not in schema:
        for key in config:  # the usual case (no input at all) needs no jsonschema
            ctx.report(path + (with_key, key), "unknown-key", at_key=True, key=key,
                       where=f"'{with_key}' of step '{step_id}'",
                       notes=[f"type {type_name} takes no {with_key}: input: remove it"])
        return
    from jsonschema import Draft202012Validator  # only steps with a with: block pay for it

    from dagu.compiler.schema_check import translate_error

    prefix = path + (with_key,)
    seen: set[tuple] = set()
    for error in sorted(Draft202012Validator(dict(schema)).iter_errors(config), key=lambda e: list(e.absolute_path)):
        error.path.extendleft(reversed(prefix))
        for where, code, at_key, fields in translate_error(error, ctx.doc.data):
            mark = (where, code, fields.get("key"))
            if mark in seen:
                continue
            seen.add(mark)
            if code == "unknown-key":
                fields["where"] = f"'{with_key}' of step '{step_id}'"
                allowed = sorted(schema.get("properties") or {})
                import difflib  # here only: a misspelling needs it
                close = difflib.get_close_matches(str(fields["key"]), allowed, n=1, cutoff=0.6)
                fields["notes"] = [f"did you mean '{close[0]}'?"] if close else \
                    [f"type {type_name} takes {', '.join(allowed)} under {with_key}:"]
            ctx.report(where, code, at_key=at_key, **fields)


def check_ignored_keys(ctx: DocContext, path: Path, raw: Mapping[str, Any], line: StepType, type_name: str,
                       step_id: str) -> None:
    """A key only some types read, on a step whose type does not read it, is an error at that key."""
    for key in raw:
        if key in TYPE_SPECIFIC_KEYS and key not in line.reads:
            readers = sorted(k for k in TYPE_SPECIFIC_KEYS if k in line.reads)
            notes = [f"a {type_name} step reads {', '.join(readers)}" if readers
                     else f"a {type_name} step runs nothing of its own: remove '{key}'"]
            if type_name in ("noop", APPROVAL) and key in ("command", "script"):
                notes.append("to run it, make it a command step (remove `type:`), with its own depends")
            ctx.report(path + (key,), "ignored-step-key", at_key=True, key=key, step=step_id,
                       type=type_name, notes=notes)


def check_call(ctx: DocContext, path: Path, raw: Mapping[str, Any], step_id: str) -> None:
    """A sub-DAG step (type dag, call, subworkflow, parallel) must name the DAG it runs."""
    if "call" in raw:
        return  # a call of the wrong type is reported by the schema pass
    declared = raw.get("type")
    ctx.report(path, "missing-key", where=f"step '{step_id}'", key="call",
               notes=[f"type {declared} runs another DAG: name it with `call: NAME`" if isinstance(declared, str)
                      else "name the DAG to run with `call: NAME`"])


def check_literal_secrets(ctx: DocContext, prefix: Path, block: Any, schema: Mapping[str, Any], where: str) -> None:
    """Refuse a secret field (`"x-secret": true` in the type's schema) given as plain text: it
    would sit in the plan and every copy of it.  A `${...}` reference (to `secrets:`) is fine."""
    from dagu.executors.catalog import secret_fields

    if not isinstance(block, dict):
        return
    for field_path in secret_fields(schema):
        value: Any = block
        for key in field_path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str) and value and "${" not in value and _is_secret_text(field_path[-1], value):
            name = field_path[-1].upper()
            ctx.report(prefix + field_path, "literal-secret", where=f"'{'.'.join(field_path)}' of {where}",
                       notes=[f"declare it under secrets: (e.g. - name: {name}, provider: env, key: {name}) "
                              f"and write {field_path[-1]}: ${{{name}}}"])


_URL_PASSWORD = re.compile(r"://[^/@:\s]*:[^/@\s]+@")
_KEYWORD_PASSWORD = re.compile(r"(?:^|\s)password\s*=\s*\S", re.I)


def _is_secret_text(field: str, value: str) -> bool:
    """A connection string (dsn, url) is secret only when it carries a password; anything else
    marked secret (a password, a token, a key) is secret whatever it holds."""
    if field.lower() in ("dsn", "url", "uri", "connection_string", "connection"):
        return bool(_URL_PASSWORD.search(value) or _KEYWORD_PASSWORD.search(value))
    return True
