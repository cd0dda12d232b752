"""`dagu migrate`: rewrite a workflow file's Dagu 1.x spellings to v2, in its own text.

The 1.x spellings are the ones legacy.py finds (camelCase and other renamed
keys, `executor:`, `run: other-dag`).  Each fix carries the source span of its
key, so the rewrite is a handful of text edits: a key is renamed where it
stands (keeping its quotes), `executor:` gives way to the `type:`/`config:`
lines it held (dedented by one level, comments and all), and nothing else of
the file changes: comments, key order, quoting, blank lines, line endings and a
missing final newline are kept.  No round-trip YAML library is needed for that.
A 1.x chain whose steps also set `depends` becomes `type: graph` with every
dependency written out (chain_rewrite.py), which is what 1.x ran.  Only a file
that spells something the 1.x way is read so: without one, an untyped DAG
whose steps declare depends is a v2 graph already (graph.dag_type) and stays
as it is.

A migrated file is checked by reading it again: it must parse and hold no 1.x
spelling any more (tests also check that it compiles to the plan the original
meant).
"""

from __future__ import annotations

import difflib
import os
from dataclasses import field

from dagu.spec.records import dataclass
from dagu.bounded_read import read_regular
from dagu.compiler.chain_rewrite import chain_with_depends, rewrite_chain
from dagu.compiler.diagnostics import Diagnostic, Reporter
from dagu.compiler.legacy import Fix, find_fixes, node_at
from dagu.compiler.loader import Document, SourceFile, Span, load_source
from dagu.compiler.spellings import dag_names


@dataclass(frozen=True)
class Edit:
    """Replace text[start:end] with `text`."""

    start: int
    end: int
    text: str


@dataclass
class Migration:
    """One file: its text before and after, the fixes made and those left to the user."""

    path: str
    before: str
    after: str
    applied: list[Fix] = field(default_factory=list)
    manual: list[Fix] = field(default_factory=list)  # found, but not rewritten automatically
    diagnostics: list[Diagnostic] = field(default_factory=list)  # the file could not be read
    notes: list[str] = field(default_factory=list)  # "file:line:col: note: ..." for what is left to do

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def diff(self) -> str:
        """A unified diff from the file as it is to the file as migrated."""
        lines = difflib.unified_diff(
            _diff_lines(self.before), _diff_lines(self.after),
            fromfile=f"a/{self.path}", tofile=f"b/{self.path}")
        return "".join(lines)


def _diff_lines(text: str) -> list[str]:
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n\\ No newline at end of file\n"
    return lines


def read_text(path: str) -> str:
    """The file's text exactly as stored (line endings kept; a UTF-8 BOM is dropped)."""
    return read_regular(path).decode("utf-8-sig")


def write_migration(migration: Migration) -> None:
    """Replace the file with its migrated text: same line endings, BOM and permissions, by the
    store's one atomic write (imported here: only `dagu migrate --write` writes)."""
    from dagu.store.runs import write_atomic

    path = migration.path
    with open(path, "rb") as fh:
        bom = "\ufeff" if fh.read(3) == b"\xef\xbb\xbf" else ""
    write_atomic(path, bom + migration.after, mode=os.stat(path).st_mode & 0o7777)


def migrate_file(path: str) -> Migration:
    """Migrate one file on disk (nothing is written; see `write_migration`)."""
    reporter = Reporter()
    try:
        text = read_text(path)
    except UnicodeDecodeError as exc:
        reporter.plain(path, "unreadable-file", reason=f"not UTF-8 text (byte {exc.start})")
        return Migration(path, "", "", diagnostics=reporter.diagnostics)
    except OSError as exc:
        reporter.plain(path, "unreadable-file", reason=exc.strerror or str(exc))
        return Migration(path, "", "", diagnostics=reporter.diagnostics)
    return migrate_text(path, text)


def migrate_text(path: str, text: str) -> Migration:
    """The v2 text of a workflow file whose text is `text` (`path` locates sibling DAG files)."""
    reporter = Reporter()
    source = load_source(path, text, reporter)
    errors = [d for d in reporter.diagnostics if d.is_error]
    if source.unparsable or errors:
        return Migration(path, text, text, diagnostics=errors)
    base_dir = os.path.dirname(os.path.abspath(path))
    names = dag_names(source)
    migration = Migration(path, text, text)
    edits: list[Edit] = []
    spells_1x = False  # the compiler reads an untyped DAG with depends as a 1.x chain from here on
    for doc in source.documents:
        fixes = find_fixes(doc, names, base_dir)
        spells_1x = spells_1x or bool(fixes)
        for fix in fixes:
            edit = _edit(source, doc, fix) if fix.automatic else None
            if edit is None:
                migration.manual.append(fix)
                migration.notes.append(_note(path, fix.key_span, _manual_reason(source, doc, fix)))
            else:
                migration.applied.append(fix)
                edits.append(edit)
        chain = rewrite_chain(source, doc) if spells_1x else None
        if chain is not None and chain.blocked:
            migration.notes.extend(_note(path, span, text) for span, text in chain.blocked)
            migration.notes.append(_note(path, chain_with_depends(doc), (  # type: ignore[arg-type]
                "this DAG has no 'type:', so it is a chain, yet its steps set depends: Dagu 1.x ran them "
                "after the step before them and after their depends; v2 wants 'type: graph' with every "
                "dependency written out (not rewritten, see the notes above)")))
        elif chain is not None:
            edits.extend(Edit(start, end, text) for start, end, text in chain.edits)
            migration.notes.extend(_note(path, span, text) for span, text in chain.notes)
    migration.after = apply_edits(text, edits)
    if migration.changed and not _reads_back(path, migration.after):
        migration.after = text  # never hand back a file we broke; say so instead
        migration.manual, migration.applied = migration.manual + migration.applied, []
        migration.notes.append(f"{path}:1:1: note: the rewrite would not parse again, so nothing was rewritten; "
                               "`dagu validate` lists each 1.x spelling to fix by hand")
    return migration


def _reads_back(path: str, text: str) -> bool:
    """The migrated text parses, with no error, into as many documents as before."""
    reporter = Reporter()
    source = load_source(path, text, reporter)
    return not source.unparsable and not reporter.error_count


def _note(path: str, span: Span, text: str) -> str:
    return f"{path}:{span.line}:{span.col}: note: {text}"


def _manual_reason(source: SourceFile, doc: Document, fix: Fix) -> str:
    step = node_at(doc.data, fix.path)
    if isinstance(step, dict) and ("type" in step or "config" in step):
        return "'executor' is not rewritten: the step also sets 'type' or 'config'; keep one of them"
    if fix.automatic and not _value_follows_key(source, fix):
        return "'executor' is not rewritten: its value is an alias (*name); write type: and config: by hand"
    return "'executor' is not rewritten: it holds keys other than type and config; move them by hand"


def apply_edits(text: str, edits: list[Edit]) -> str:
    """Apply non-overlapping edits (an edit inside an earlier one's range is dropped)."""
    out: list[str] = []
    pos = 0
    for edit in sorted(edits, key=lambda e: (e.start, e.end)):
        if edit.start < pos:
            continue
        out.append(text[pos:edit.start])
        out.append(edit.text)
        pos = edit.end
    out.append(text[pos:])
    return "".join(out)


def _edit(source: SourceFile, doc: Document, fix: Fix) -> Edit | None:
    if fix.kind in ("rename", "run-call"):
        return _rename(source, fix, fix.new if fix.kind == "rename" else "call")
    executor = node_at(doc.data, fix.path + (fix.key,))
    if isinstance(executor, str):
        return _rename(source, fix, "type")
    if not isinstance(executor, dict) or fix.value_span is None:
        return None
    if not _value_follows_key(source, fix):
        return None
    if source.text.startswith("{", fix.value_span.start):
        return _flow_executor(source, doc, fix, list(executor))
    return _block_executor(source, fix)


def _value_follows_key(source: SourceFile, fix: Fix) -> bool:
    """False for an alias (`executor: *docker`) or a tagged value: its text is not after the key."""
    if fix.value_span is None or fix.value_span.start < fix.key_span.end:
        return False
    between = source.text[fix.key_span.end:fix.value_span.start]
    return "".join(line.split("#", 1)[0] for line in between.split("\n")).strip() == ":"


def _rename(source: SourceFile, fix: Fix, new: str) -> Edit:
    span = fix.key_span
    quote = span.style if span.style in ("'", '"') else ""
    return Edit(span.start, span.end, f"{quote}{new}{quote}")


def _flow_executor(source: SourceFile, doc: Document, fix: Fix, keys: list[str]) -> Edit | None:
    """`executor: {type: docker, config: {...}}` -> `type: docker` and `config: {...}` as siblings."""
    text = source.text
    base = fix.path + (fix.key,)
    pieces = []
    for key in keys:
        key_span, value_span = doc.key_spans.get(base + (key,)), doc.spans.get(base + (key,))
        if key_span is None or value_span is None:
            return None
        pieces.append(text[key_span.start:value_span.end].rstrip())
    parent = doc.spans.get(fix.path)
    in_flow = parent is not None and text.startswith("{", parent.start)
    newline = "\r\n" if "\r\n" in text else "\n"
    separator = ", " if in_flow else newline + " " * (fix.key_span.col - 1)
    return Edit(fix.key_span.start, fix.value_span.end, separator.join(pieces))


def _block_executor(source: SourceFile, fix: Fix) -> Edit | None:
    """The lines under a block `executor:`, dedented one level, in place of the key."""
    text = source.text
    key_col = fix.key_span.col - 1
    key_line = fix.key_span.line
    rest_of_key_line = source.line_text(key_line)[key_col + len(text[fix.key_span.start:fix.key_span.end]):]
    comment = rest_of_key_line.split("#", 1)[1].strip() if "#" in rest_of_key_line else ""
    lines: list[str] = []
    last = key_line
    for number in range(key_line + 1, len(source.line_starts) + 1):
        line = source.line_text(number)
        stripped = line.strip()
        indent = len(line) - len(line.lstrip(" "))
        if stripped and not stripped.startswith("#") and indent <= key_col:
            break
        lines.append(line)
        if stripped and not stripped.startswith("#"):
            last = number
    lines = lines[: last - key_line]
    if not lines:
        return None
    delta = (fix.value_span.col - 1) - key_col  # the mapping's keys start at its first key's column
    if delta <= 0:
        return None
    out = []
    for line in lines:
        lead = len(line) - len(line.lstrip(" "))
        out.append(line[min(lead, delta):] if line.strip() else line.strip(" \t"))
    out[0] = out[0].lstrip(" ")
    if comment:
        out[0] += f"  # {comment}"
    end_line = last
    end = source.line_starts[end_line - 1] + len(source.line_text(end_line))
    newline = "\r\n" if "\r\n" in text else "\n"
    return Edit(fix.key_span.start, end, newline.join(out))
