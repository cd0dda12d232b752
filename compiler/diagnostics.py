"""Diagnostics: what the compiler says about a file, each pinned to a line and column.

Every pass reports into a `Reporter` instead of raising, so one run reports
every problem in a file (the habit of upstream Dagu's error lists, with the
positions it lacks).  Messages come only from the catalogue in `codes.py`.
"""

from __future__ import annotations

from dataclasses import field
from collections.abc import Iterable, Sequence

from dagu.spec.records import dataclass

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any
    from dagu.compiler.loader import Document, SourceFile, Span


@dataclass(frozen=True)
class Diagnostic:
    """One problem, self-contained: it carries its source line so it renders anywhere."""

    file: str
    line: int
    col: int
    severity: str
    code: str
    message: str
    notes: tuple[str, ...] = ()
    source_line: str = ""
    width: int = 1  # how many columns the caret underlines

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.file, self.line, self.col, self.code)


def _width_of(source: "SourceFile", span: "Span") -> int:
    """Columns to underline: the node's extent on its first line."""
    line_end = source.text.find("\n", span.start)
    stop = span.end if line_end < 0 else min(span.end, line_end)
    return max(1, len(source.text[span.start:stop].rstrip()))


@dataclass
class Reporter:
    """Collects diagnostics; the passes call it, the CLI renders what it holds."""

    diagnostics: list[Diagnostic] = field(default_factory=list)

    def add(self, diag: Diagnostic) -> None:
        self.diagnostics.append(diag)

    def _make(self, file: str, line: int, col: int, code: str, notes: Iterable[str],
              source_line: str, width: int, severity: str | None, fields: dict[str, Any]) -> None:
        from dagu.compiler.codes import CODES  # on the first problem: a clean file never loads the catalogue

        entry = CODES[code]
        self.add(Diagnostic(
            file=file, line=line, col=col,
            severity=severity or entry.severity,
            code=code,
            message=entry.template.format(**fields),
            notes=tuple(notes),
            source_line=source_line,
            width=width,
        ))

    def at(self, source: "SourceFile", line: int, col: int, code: str, *,
           notes: Sequence[str] = (), width: int = 1, severity: str | None = None, **fields: Any) -> None:
        """Report at an explicit 1-based line and column of `source`."""
        self._make(source.path, line, col, code, notes, source.line_text(line), width, severity, fields)

    def at_span(self, source: "SourceFile", span: "Span", code: str, *,
                notes: Sequence[str] = (), severity: str | None = None, **fields: Any) -> None:
        """Report at a YAML node, underlining it."""
        self._make(source.path, span.line, span.col, code, notes, source.line_text(span.line),
                   _width_of(source, span), severity, fields)

    def at_path(self, source: "SourceFile", doc: "Document", path: tuple, code: str, *,
                at_key: bool = False, notes: Sequence[str] = (), severity: str | None = None,
                **fields: Any) -> None:
        """Report at the node found by `path` (its key when `at_key`), or its nearest ancestor."""
        span = (doc.key_spans.get(path) if at_key else None) or span_of(doc, path)
        self.at_span(source, span, code, notes=notes, severity=severity, **fields)

    def plain(self, file: str, code: str, **fields: Any) -> None:
        """Report about a file as a whole (it could not be read)."""
        self._make(file, 1, 1, code, (), "", 1, None, fields)

    @property
    def error_count(self) -> int:
        return sum(1 for d in self.diagnostics if d.is_error)

    @property
    def warning_count(self) -> int:
        return sum(1 for d in self.diagnostics if not d.is_error)


def span_of(doc: "Document", path: tuple) -> "Span":
    """The span of the node at `path`, or of its closest ancestor that has one."""
    while path not in doc.spans and path:
        path = path[:-1]
    return doc.spans.get(path) or doc.start  # type: ignore[return-value]


def describe_path(path: Sequence[Any]) -> str:
    """A human name for a place in the document: `steps[2].retry_policy.limit`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "the document"
