"""Render diagnostics for people (text), programs (json), GitHub Actions and SARIF tools."""

from __future__ import annotations

import json
from collections.abc import Sequence

from dagu import __version__
from dagu.compiler.diagnostics import Diagnostic

FORMATS = ("text", "json", "github", "sarif")


def render_text(diags: Sequence[Diagnostic], checked: int) -> str:
    """mypy/ruff-style lines, each followed by the source line, a caret and notes."""
    out: list[str] = []
    for d in diags:
        out.append(f"{d.file}:{d.line}:{d.col}: {d.severity}: {d.message}  [{d.code}]")
        if d.source_line:
            line, col, width = _excerpt(d.source_line, d.col, d.width)
            out.append(f"    {line}")
            lead = "".join(c if c == "\t" else " " for c in line[: col - 1])
            out.append(f"    {lead}^{'~' * (width - 1)}")
        out.extend(f"  note: {n}" for n in d.notes)
    out.append(summary(diags, checked))
    return "\n".join(out) + "\n"


def summary(diags: Sequence[Diagnostic], checked: int) -> str:
    errors = sum(1 for d in diags if d.is_error)
    warnings = len(diags) - errors
    files = f"{checked} file" + ("" if checked == 1 else "s")
    if not diags:
        return f"Success: no issues found in {files}"
    bad = len({d.file for d in diags})
    parts = []
    if errors:
        parts.append(f"{errors} error" + ("" if errors == 1 else "s"))
    if warnings:
        parts.append(f"{warnings} warning" + ("" if warnings == 1 else "s"))
    return f"Found {' and '.join(parts)} in {bad} file{'' if bad == 1 else 's'} (checked {files})"


def render_json(diags: Sequence[Diagnostic], checked: int) -> str:
    items = [
        {"file": d.file, "line": d.line, "column": d.col, "end_column": d.col + d.width,
         "severity": d.severity, "code": d.code, "message": d.message, "notes": list(d.notes)}
        for d in diags
    ]
    return json.dumps({"checked_files": checked, "diagnostics": items}, indent=2) + "\n"


def _gh_escape(text: str, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def render_github(diags: Sequence[Diagnostic], checked: int) -> str:
    """GitHub Actions workflow commands: annotations on the pull request's files."""
    lines = []
    for d in diags:
        level = "error" if d.is_error else "warning"
        body = d.message + "".join(f"\nnote: {n}" for n in d.notes)
        lines.append(
            f"::{level} file={_gh_escape(d.file, True)},line={d.line},col={d.col},"
            f"endColumn={d.col + d.width},title={_gh_escape(d.code, True)}::{_gh_escape(body)}"
        )
    lines.append(summary(diags, checked))
    return "\n".join(lines) + "\n"


def render_sarif(diags: Sequence[Diagnostic], checked: int) -> str:
    """SARIF 2.1.0, the format code-scanning services import."""
    from dagu.compiler.codes import CODES  # the catalogue is loaded by a report that needs it

    used = sorted({d.code for d in diags})
    rules = [
        {
            "id": code,
            "name": code,
            "shortDescription": {"text": CODES[code].explanation},
            "defaultConfiguration": {"level": CODES[code].severity},
        }
        for code in used
    ]
    index = {code: i for i, code in enumerate(used)}
    results = [
        {
            "ruleId": d.code,
            "ruleIndex": index[d.code],
            "level": "error" if d.is_error else "warning",
            "message": {"text": d.message + "".join(f"\nnote: {n}" for n in d.notes)},
            "locations": [{
                "physicalLocation": {
                    "artifactLocation": {"uri": d.file},
                    "region": {"startLine": d.line, "startColumn": d.col, "endColumn": d.col + d.width},
                }
            }],
        }
        for d in diags
    ]
    log = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "dagu",
                "version": __version__,
                "informationUri": "https://github.com/dagu-org/dagu",
                "rules": rules,
            }},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    }
    return json.dumps(log, indent=2) + "\n"


RENDERERS = {"text": render_text, "json": render_json, "github": render_github, "sarif": render_sarif}


EXCERPT_CHARS = 160  # a minified or generated line can be megabytes long: show a window of it


def _excerpt(line: str, col: int, width: int) -> tuple[str, int, int]:
    """The part of a long source line around `col`, and the column and width within it."""
    if len(line) <= EXCERPT_CHARS:
        return line, col, max(1, width)
    start = max(0, col - 1 - EXCERPT_CHARS // 4)
    piece = line[start:start + EXCERPT_CHARS]
    prefix = "..." if start else ""
    suffix = "..." if start + EXCERPT_CHARS < len(line) else ""
    new_col = col - start + len(prefix)
    return prefix + piece + suffix, new_col, max(1, min(width, len(piece) - (col - 1 - start)))


def render(fmt: str, diags: Sequence[Diagnostic], checked: int) -> str:
    ordered = sorted(diags, key=Diagnostic.sort_key)
    return RENDERERS[fmt](ordered, checked)
