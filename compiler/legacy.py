"""Dagu 1.x spellings: find each one, with the exact v2 fix, and apply the fixes in memory.

1.x files spell keys in camelCase (`handlerOn`, `retryPolicy.intervalSec`),
use a few other names (`dir`, `precondition`, capitalised `Exit`), put the step
type under `executor:`, and call sub-DAGs with `run: NAME`.  `find_fixes` walks
a document alongside spec/dag.schema.json, so a key is renamed only where the
v2 format has a fixed set of keys and only to one of them: keys inside free
maps (env, labels, executor input) are never touched.  Each `Fix` keeps the
source span of what it changes; the compiler reports every fix as an error
and then applies them with `apply_fixes` so later passes check the v2 meaning,
and `dagu migrate` (migrate.py) turns the same fixes into text edits.

`run:` is also upstream's newest spelling of a shell command, so a 1.x call is
told from a command by this rule: the value is one word (no spaces) and either
names a DAG of the same file (a `---` document's `name:`), names a file
NAME.yaml / NAME.yml beside this one, ends in .yaml / .yml, or the step also
passes `params:` (a command step has none).  Anything else is a command.
"""

from __future__ import annotations

import os
import re

from dagu.spec.records import dataclass
from dagu.compiler.loader import Document, Span
from dagu.compiler.schema_check import is_simple_step, load_schema

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any
else:
    Any = object  # the aliases below are built at run time; for type checkers this is typing.Any

Path = tuple[Any, ...]

# The codes of the diagnostics about 1.x spellings (`dagu migrate` rewrites what they report).
LEGACY_CODES = frozenset({"camel-case-key", "legacy-key", "legacy-executor", "legacy-run-call"})

# 1.x names that are not just the camelCase of the v2 name.
_RENAMES = {"dir": "working_dir", "precondition": "preconditions", "cancel": "abort"}
_YAML_SUFFIXES = (".yaml", ".yml")
_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


def snake_case(key: str) -> str:
    """`maxActiveSteps` -> `max_active_steps`, `disableSSL` -> `disable_ssl`."""
    return _CAMEL.sub(r"_\1", key).lower()


def v2_name(key: str, allowed: Any) -> str | None:
    """The v2 key a 1.x key stands for, when it is one of `allowed`."""
    for candidate in (_RENAMES.get(key), snake_case(key), key.lower()):
        if candidate and candidate != key and candidate in allowed:
            return candidate
    return None


@dataclass(frozen=True)
class Fix:
    """One 1.x spelling and how v2 writes it.

    kind: "rename" (key -> new), "executor" (`executor:` -> `type: new` + `config:`
    when reason is "config") or "run-call" (`run: NAME` -> `call: NAME`, reason
    says why it is a call).  `path` is the mapping that
    holds the key, in the original document; `key_span`/`value_span` locate
    the key and its value in the text.
    """

    kind: str
    path: Path
    key: str
    new: str
    key_span: Span
    value_span: Span | None
    reason: str = ""
    automatic: bool = True  # False: reported, but `dagu migrate` cannot rewrite it


def find_fixes(doc: Document, dag_names: frozenset[str], base_dir: str) -> list[Fix]:
    """Every 1.x spelling of one document, outer keys before the keys inside them."""
    if not isinstance(doc.data, dict):
        return []
    finder = _Finder(doc, dag_names, base_dir)
    finder.visit(doc.data, load_schema(), ())
    return finder.fixes


class _Finder:
    def __init__(self, doc: Document, dag_names: frozenset[str], base_dir: str) -> None:
        self.doc = doc
        self.dag_names = dag_names
        self.base_dir = base_dir
        self.defs = load_schema()["$defs"]
        self.fixes: list[Fix] = []

    def resolve(self, schema: dict[str, Any], value: Any) -> tuple[dict[str, Any], str | None]:
        """Follow $ref and pick the anyOf branch of the value's type; name the $def reached."""
        ref = None
        for _ in range(8):
            target = schema.get("$ref")
            if isinstance(target, str) and target.startswith("#/$defs/"):
                ref = target[8:]
                schema = self.defs.get(ref, {})
                continue
            branches = schema.get("anyOf")
            if branches:
                schema = next((b for b in branches if _type_matches(b.get("type"), value)), {})
                continue
            break
        return schema, ref

    def visit(self, value: Any, schema: dict[str, Any], path: Path) -> None:
        schema, ref = self.resolve(schema, value)
        if isinstance(value, dict):
            if ref == "step":
                self.step(value, path)
            props = schema.get("properties")
            if props is None:
                extra = schema.get("additionalProperties")
                if isinstance(extra, dict) and "if" not in schema:
                    for key, child in value.items():
                        self.visit(child, extra, path + (key,))
                return
            closed = schema.get("additionalProperties") is False
            for key, child in value.items():
                sub = props.get(key)
                if sub is None and closed and isinstance(key, str) and key != "executor":
                    new = v2_name(key, props)
                    if new is not None and new not in value:
                        self.add("rename", path, key, new)
                        sub = props[new]
                if isinstance(sub, dict):
                    self.visit(child, sub, path + (key,))
        elif isinstance(value, list):
            items = schema.get("items")
            if isinstance(items, dict):
                for i, item in enumerate(value):
                    if isinstance(item, str) or (isinstance(item, dict) and is_simple_step(item)):
                        continue  # only v2 keys of plain values: nothing to find (the fast path)
                    self.visit(item, items, path + (i,))

    def add(self, kind: str, path: Path, key: str, new: str, reason: str = "", automatic: bool = True) -> None:
        key_span = self.doc.key_spans.get(path + (key,)) or self.doc.spans[path]
        self.fixes.append(Fix(kind, path, key, new, key_span, self.doc.spans.get(path + (key,)), reason, automatic))

    def step(self, step: dict[str, Any], path: Path) -> None:
        """The two 1.x step spellings that are more than a key name."""
        if "executor" in step:
            executor = step["executor"]
            free = "type" not in step and "config" not in step
            if isinstance(executor, str) and executor:
                self.add("executor", path, "executor", executor, automatic=free)
            elif isinstance(executor, dict) and isinstance(executor.get("type"), str) \
                    and set(executor) <= {"type", "config"}:
                self.add("executor", path, "executor", executor["type"],
                         reason="config" if "config" in executor else "", automatic=free)
            else:
                self.add("executor", path, "executor", "", automatic=False)
        target = step.get("run")
        if isinstance(target, str) and "call" not in step:
            reason = self.call_reason(target.strip(), "params" in step)
            if reason:
                self.add("run-call", path, "run", "call", reason)

    def call_reason(self, target: str, has_params: bool) -> str:
        """Why `run: target` is a 1.x sub-DAG call, or "" when it is a command."""
        if not target or any(c.isspace() for c in target):
            return ""
        if target in self.dag_names:
            return f"'{target}' is the name of a DAG in this file"
        if target.endswith(_YAML_SUFFIXES):
            return f"'{target}' is a workflow file name"
        for suffix in _YAML_SUFFIXES:
            if os.path.isfile(os.path.join(self.base_dir, target + suffix)):
                return f"{target}{suffix} is a workflow file beside this one"
        if has_params:
            return "the step passes params:, which only a sub-DAG call takes"
        return ""


def _type_matches(declared: Any, value: Any) -> bool:
    types = declared if isinstance(declared, list) else [declared]
    if isinstance(value, bool):
        kind = "boolean"
    elif isinstance(value, int):
        return "integer" in types or "number" in types
    elif isinstance(value, float):
        kind = "number"
    elif isinstance(value, str):
        kind = "string"
    elif isinstance(value, list):
        kind = "array"
    elif isinstance(value, dict):
        kind = "object"
    else:
        kind = "null"
    return kind in types


def node_at(data: Any, path: Path) -> Any:
    for part in path:
        data = data[part]
    return data


def apply_fixes(doc: Document, fixes: list[Fix]) -> None:
    """Rewrite the document's data to its v2 spelling, keeping every node's span.

    Deeper keys first, so the path of each fix still leads through the
    original (not yet renamed) keys above it.
    """
    for fix in sorted(fixes, key=lambda f: -len(f.path)):
        mapping = node_at(doc.data, fix.path)
        if not isinstance(mapping, dict) or fix.key not in mapping:
            continue
        if fix.kind in ("rename", "run-call"):
            new = fix.new if fix.kind == "rename" else "call"
            if new in mapping:
                continue
            replace_key(doc, fix.path, mapping, fix.key, [(new, mapping[fix.key], (fix.key,))])
        elif fix.kind == "executor":
            executor = mapping[fix.key]
            if isinstance(executor, str):
                entries = [("type", executor, (fix.key,))]
            elif isinstance(executor, dict):
                entries = [(k, executor[k], (fix.key, k)) for k in ("type", "config") if k in executor]
            else:
                entries = []
            replace_key(doc, fix.path, mapping, fix.key, [e for e in entries if e[0] not in mapping])


def replace_key(doc: Document, path: Path, mapping: dict[str, Any], key: str,
                entries: list[tuple[str, Any, Path]]) -> None:
    """Put `entries` (new key, value, where the value was, relative to `path`) where `key` was."""
    items = list(mapping.items())
    mapping.clear()
    for k, v in items:
        if k != key:
            mapping[k] = v
            continue
        for new_key, new_value, old_rel in entries:
            mapping[new_key] = new_value
            copy_spans(doc, path + old_rel, path + (new_key,), new_value)
            old_key_span = doc.key_spans.get(path + old_rel)
            if old_key_span is not None:
                doc.key_spans[path + (new_key,)] = old_key_span


def copy_spans(doc: Document, old: Path, new: Path, value: Any) -> None:
    """Make the spans of `value`'s subtree, recorded under `old`, also found under `new`."""
    span = doc.spans.get(old)
    if span is not None:
        doc.spans[new] = span
    if isinstance(value, dict):
        for k, v in value.items():
            key_span = doc.key_spans.get(old + (k,))
            if key_span is not None:
                doc.key_spans[new + (k,)] = key_span
            copy_spans(doc, old + (k,), new + (k,), v)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            copy_spans(doc, old + (i,), new + (i,), v)
