"""A Dagu 1.x chain whose steps also declare `depends`, rewritten as an explicit v2 graph.

A 1.x file without `type:` is a chain (a v2 file is one only while no step
declares `depends`, see graph.dag_type): each step runs after the step before it
(after every member of a parallel group, a nested list, and each member of a
group after the item before the group).  1.x also honoured a step's own
`depends`, adding those edges to the chain.  v2 rejects depends inside a chain
(`chain-depends`), so the same meaning is written out: `type: graph` goes
before the document's first key, and every step gets the chain's edge added to
its depends, unless it already declares it.  Steps are referred to by id, else
by name, else by their generated id (with a note, as that id moves when steps
are added above).

Only text is inserted: a depends line after the step's `name:`/`id:` line (or
before its first key), an item at the end of a block or flow list, a scalar
turned into a flow list.  A shape that cannot be edited that way (a multi-line
scalar, a flow-style document) leaves the document unchanged, with a note.
"""

from __future__ import annotations

import json
import re
from dataclasses import field

from dagu.spec.records import dataclass
from dagu.compiler.loader import Document, SourceFile, Span
from dagu.compiler.steps import StepDraft, flatten

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any

_PLAIN_REF = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_ .@/-]*(?<! )$")
_FLOW_UNSAFE = re.compile(r"[,\[\]{}]|: | #|^[-?:&*!|>'\"%@`]")


@dataclass
class ChainRewrite:
    """The edits that make one document's chain explicit, and what could not be done."""

    edits: list[tuple[int, int, str]] = field(default_factory=list)  # (start, end, text)
    notes: list[tuple[Span, str]] = field(default_factory=list)  # advice; the edits still apply
    blocked: list[tuple[Span, str]] = field(default_factory=list)  # the document is left as it is


def chain_with_depends(doc: Document) -> Span | None:
    """Where a DAG without `type:` first declares depends: a chain in a 1.x file (a graph in v2)."""
    data = doc.data
    if not isinstance(data, dict) or "type" in data:
        return None
    steps = data.get("steps")
    bodies: list[tuple[tuple, Any]] = []
    if isinstance(steps, list):
        for i, item in enumerate(steps):
            members = item if isinstance(item, list) else [item]
            bodies.extend((("steps", i, j) if isinstance(item, list) else ("steps", i), m)
                          for j, m in enumerate(members))
    elif isinstance(steps, dict):
        bodies = [(("steps", k), v) for k, v in steps.items()]
    for path, body in bodies:
        if isinstance(body, dict) and body.get("depends") is not None:
            return doc.key_spans.get(path + ("depends",))
    return None


def rewrite_chain(source: SourceFile, doc: Document) -> ChainRewrite | None:
    """The rewrite of a chain document that declares depends; None for any other document."""
    if chain_with_depends(doc) is None:
        return None
    out = ChainRewrite()
    editor = _Editor(source, doc, out)
    editor.insert_type()
    drafts = flatten(None, doc.data["steps"], chain=True)  # type: ignore[arg-type]
    by_id: dict[str, StepDraft] = {}
    by_name: dict[str, str] = {}
    for d in drafts:
        by_id.setdefault(d.id, d)
        if d.name is not None:
            by_name.setdefault(d.name, d.id)
    refs: dict[str, str] = {}

    def ref(sid: str) -> str:
        if sid not in refs:
            refs[sid] = _ref(by_id[sid], by_id, by_name, editor)
        return refs[sid]

    for d in drafts:
        declared = {t if t in by_id else by_name.get(t) for t, _ in d.depends}
        missing = [ref(p) for p in d.implied if p not in declared]
        if missing:
            editor.add_depends(d, missing)
    return out


def _ref(d: StepDraft, by_id: dict[str, StepDraft], by_name: dict[str, str], editor: "_Editor") -> str:
    """How depends names step `d`: its id when written or taken from its name, else its name."""
    name = d.name
    if d.explicit_id or d.id == name:
        return d.id
    if name is not None and name not in by_id and by_name.get(name) == d.id:
        return name
    editor.note(d.path, f"this step has no id or name, so depends refers to it by its generated id "
                        f"'{d.id}', which changes when steps are added above it; give it an id")
    return d.id


class _Editor:
    def __init__(self, source: SourceFile, doc: Document, out: ChainRewrite) -> None:
        self.source, self.doc, self.out = source, doc, out
        self.text = source.text
        self.newline = "\r\n" if "\r\n" in self.text else "\n"

    def note(self, path: tuple, text: str) -> None:
        self.out.notes.append((self.doc.key_spans.get(path) or self.doc.spans[path], text))

    def block(self, span: Span, text: str) -> None:
        self.out.blocked.append((span, text))

    def insert(self, at: int, text: str) -> None:
        self.out.edits.append((at, at, text))

    def line_end(self, offset: int) -> int:
        """The offset of the end of the line holding `offset` (before its line break)."""
        line, _ = self.source.position(offset)
        return self.source.line_starts[line - 1] + len(self.source.line_text(line))

    def one_line(self, span: Span) -> bool:
        return span.style not in ("|", ">") and self.source.position(max(span.end - 1, span.start))[0] == span.line

    def insert_type(self) -> None:
        top = self.doc.spans[()]
        firsts = [s for p, s in self.doc.key_spans.items() if len(p) == 1]
        first = min(firsts, key=lambda s: s.start) if firsts else None
        if self.text.startswith("{", top.start) or first is None or first.col != 1:
            self.block(top, "the document is not a block mapping starting in column 1: add 'type: graph' by hand")
            return
        self.insert(first.start, "type: graph" + self.newline)

    def add_depends(self, d: StepDraft, refs: list[str]) -> None:
        body = self.doc.spans[d.path]
        if not self._is_mapping(d.path):
            self._scalar_step(d, body, refs)
        elif "depends" not in d.raw:
            self._new_key(d, body, refs)
        else:
            self._extend(d, refs)

    def _is_mapping(self, path: tuple) -> bool:
        node: Any = self.doc.data
        for part in path:
            node = node[part]
        return isinstance(node, dict)

    def _scalar_step(self, d: StepDraft, span: Span, refs: list[str]) -> None:
        """`- echo b` (or `b: echo b`) -> a mapping of `command:` and `depends:`."""
        value = self.text[span.start:span.end]
        if not self.one_line(span) or not isinstance(d.raw.get("command"), str):
            self.block(span, "this step is a command written as a multi-line or list value; "
                             "write it as a mapping with command: and depends: by hand")
            return
        if self._in_flow(d.path):
            self.out.edits.append((span.start, span.end, f"{{command: {value}, depends: {_depends_value(refs)}}}"))
            return
        if isinstance(d.path[-1], str):  # `key: command` in the map form
            key = self.doc.key_spans[d.path]
            colon = self.text.index(":", key.end)
            indent = " " * (key.col - 1 + 2)
            text = f":{self.newline}{indent}command: {value}{self.newline}{indent}depends: {_depends_value(refs)}"
            self.out.edits.append((colon, span.end, text))
            return
        indent = " " * (span.col - 1)
        text = f"command: {value}{self.newline}{indent}depends: {_depends_value(refs)}"
        self.out.edits.append((span.start, span.end, text))

    def _in_flow(self, path: tuple) -> bool:
        parent = self.doc.spans.get(path[:-1])
        return parent is not None and self.text[parent.start:parent.start + 1] in "[{"

    def _new_key(self, d: StepDraft, span: Span, refs: list[str]) -> None:
        if self.text.startswith("{", span.start):
            close = span.end - 1
            if self.text[close] != "}":
                self.block(span, "add depends to this step by hand")
                return
            before = self.text[span.start + 1:close].rstrip()
            at = span.start + 1 + len(before)
            self.insert(at, f"{', ' if before.strip() else ''}depends: {_depends_value(refs)}")
            return
        for key in ("name", "id"):
            key_span, value_span = self.doc.key_spans.get(d.path + (key,)), self.doc.spans.get(d.path + (key,))
            if key_span and value_span and value_span.line == key_span.line and self.one_line(value_span):
                indent = " " * (key_span.col - 1)
                self.insert(self.line_end(value_span.start),
                            f"{self.newline}{indent}depends: {_depends_value(refs)}")
                return
        first = min((s for p, s in self.doc.key_spans.items() if p[:-1] == d.path), key=lambda s: s.start)
        self.insert(first.start, f"depends: {_depends_value(refs)}{self.newline}{' ' * (first.col - 1)}")

    def _extend(self, d: StepDraft, refs: list[str]) -> None:
        path = d.path + ("depends",)
        span = self.doc.spans[path]
        value = d.raw["depends"]
        if isinstance(value, list):
            if self.text.startswith("[", span.start):
                close = span.end - 1
                inner = self.text[span.start + 1:close]
                sep = ", " if inner.strip() else ""
                at = span.start + 1 + len(inner.rstrip())
                self.insert(at, sep + ", ".join(_ref_text(r) for r in refs))
                return
            last = self.doc.spans[path + (len(value) - 1,)]
            line_start = self.source.line_starts[last.line - 1]
            dash = self.text.rfind("-", line_start, last.start)
            if dash < 0:
                self.block(span, "add the step before this one to its depends by hand")
                return
            indent = " " * (dash - line_start)
            self.insert(self.line_end(last.end if self.one_line(last) else last.start),
                        "".join(f"{self.newline}{indent}- {_ref_text(r)}" for r in refs))
            return
        if value is None or not self.one_line(span) or span.end <= span.start:
            self.block(span, "add the step before this one to its depends by hand")
            return
        written = self.text[span.start:span.end]
        if span.style is None and _FLOW_UNSAFE.search(written):
            written = json.dumps(str(value))
        self.out.edits.append((span.start, span.end, "[" + ", ".join([written] + [_ref_text(r) for r in refs]) + "]"))


def _ref_text(ref: str) -> str:
    """A step reference as YAML text that reads back as `ref` in block and flow context alike."""
    return ref if _PLAIN_REF.match(ref) and not _FLOW_UNSAFE.search(ref) else json.dumps(ref)


def _depends_value(refs: list[str]) -> str:
    return _ref_text(refs[0]) if len(refs) == 1 else "[" + ", ".join(_ref_text(r) for r in refs) + "]"
