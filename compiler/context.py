"""What every pass over one YAML document needs: where it is, and where to report."""

from __future__ import annotations

from dataclasses import field

from dagu.spec.records import dataclass
from dagu.compiler.diagnostics import Reporter, span_of
from dagu.compiler.expressions import is_plain, parse_template
from dagu.compiler.loader import Document, SourceFile

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any
else:
    Any = object  # the aliases below are built at run time; for type checkers this is typing.Any

Path = tuple[Any, ...]

# Upstream's newest spelling names where a variable comes from: ${env.NAME}, ${params.NAME}.
_NAMESPACES = ("env", "params")


@dataclass(frozen=True)
class TemplateRef:
    """A variable node found in a template, with where it sits, for the reference pass."""

    owner: str | None  # step id, "handler_on.NAME", or None for DAG-level values
    path: Path
    node: dict[str, Any]
    offset: int
    length: int
    text: str  # the whole string the node was found in


@dataclass
class DocContext:
    """One document being compiled: its source, its reporter, and the refs seen so far."""

    source: SourceFile
    doc: Document
    reporter: Reporter
    refs: list[TemplateRef] = field(default_factory=list)
    consts: dict[str, str] = field(default_factory=dict)  # `consts:`, inlined into ${consts.NAME}

    def where(self, path: Path) -> tuple[SourceFile, Document, Path]:
        """The file, document and path the node at `path` was read from.

        The document itself, except for a DAG merged over a base config
        (base_config.py), whose values may come from base.yaml.
        """
        return self.source, self.doc, path

    def report(self, path: Path, code: str, *, at_key: bool = False, **fields: Any) -> None:
        source, doc, path = self.where(path)
        self.reporter.at_path(source, doc, path, code, at_key=at_key, **fields)

    def template(self, path: Path, value: Any, owner: str | None = None) -> list[Any]:
        """Parse a user string into template parts, reporting problems at their exact column."""
        if value is None:
            return []
        text = value if isinstance(value, str) else scalar_text(value)
        if is_plain(text):
            return [text] if text else []
        if "${consts." in text:
            from dagu.compiler.spellings import inline_consts

            text = inline_consts(self, path, text)
            if is_plain(text):
                return [text] if text else []
        parsed = parse_template(text)
        if parsed.problems:
            source, doc, where = self.where(path)
            span = span_of(doc, where)
        for problem in parsed.problems:
            line, col = source.locate_in_scalar(span, text, problem.offset, problem.length)
            notes = [problem.hint] if problem.hint else []
            self.reporter.at(source, line, col, problem.code, message=problem.message,
                             notes=notes, width=problem.length)
        namespaced = "{env." in text or "{params." in text
        for offset, length, node in parsed.refs:
            if namespaced and node.get("var") in _NAMESPACES and node["path"] and isinstance(node["path"][0], str):
                node["var"], node["path"] = node["path"][0], node["path"][1:]  # ${env.X} is ${X}
            self.refs.append(TemplateRef(owner, path, node, offset, length, text))
        return parsed.parts

    def position_of_ref(self, ref: TemplateRef) -> tuple[SourceFile, int, int]:
        """The file, line and column of a variable reference."""
        source, doc, path = self.where(ref.path)
        return (source, *source.locate_in_scalar(span_of(doc, path), ref.text, ref.offset, ref.length))


def scalar_text(value: Any) -> str:
    """How a YAML scalar reads as text: true/false lower-case, numbers as written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else str(value)
    return str(value)
