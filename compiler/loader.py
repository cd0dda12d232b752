"""Read a workflow file into plain data while keeping the position of every node.

Every later pass reports problems by *path* (``("steps", 3, "depends")``); this
module is what turns a path back into a line and column.  It composes YAML
nodes with libyaml when available (speed matters for 10,000-step files) and
builds the Python values itself, with YAML 1.2 core scalars: ``yes``/``no``/
``on``/``off`` stay strings and ``0755`` stays an int 755, as in the Go YAML
library upstream Dagu uses.  Duplicate keys are reported, not silently
overwritten.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import field
from collections.abc import Iterable
from collections import namedtuple

from dagu.compiler.yaml_import import yaml

from dagu.spec.digest import sha256_hex
from dagu.spec.records import dataclass
from dagu.bounded_read import MAX_WORKFLOW_BYTES, read_regular
from dagu.compiler.diagnostics import Reporter

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any
else:
    Any = object  # the aliases below are built at run time; for type checkers this is typing.Any

Path = tuple[Any, ...]

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


_STR, _SEQ, _MAP = "tag:yaml.org,2002:str", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"
_PLAIN = "!plain"  # an untagged plain scalar, typed later by `_scalar` with the core schema


class _CoreSchemaLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """A loader whose implicit tags follow the YAML 1.2 core schema.

    libyaml composes the nodes but calls back into Python to resolve each
    node's tag; that callback only marks untagged plain scalars, and
    `_scalar` types just the ones that are built (a third of the load time
    of a 10,000-step file went to the stock resolver).
    """

    def resolve(self, kind: type, value: Any, implicit: Any) -> str:
        if kind is yaml.ScalarNode:
            return _PLAIN if implicit[0] else _STR
        return _SEQ if kind is yaml.SequenceNode else _MAP


_IMPLICIT: dict[str, list[tuple[str, re.Pattern[str]]]] = {}
for _tag, _regex, _first in [
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
    ("tag:yaml.org,2002:merge", r"^<<$", "<"),
]:
    for _char in _first:
        _IMPLICIT.setdefault(_char, []).append((_tag, re.compile(_regex)))


def _plain_tag(text: str) -> str:
    """The core-schema tag of an untagged plain scalar (as yaml's implicit resolvers would say)."""
    for tag, regex in _IMPLICIT.get(text[:1], ()):
        if regex.match(text):
            return tag
    return _STR


# What usually causes the parser's terser complaints, said as a fix.
_SYNTAX_HINTS = {
    "mapping values are not allowed in this context": (
        "a ': ' inside an unquoted value starts a new key; quote the whole value, or use a block scalar (|)",),
    "found character '\\t' that cannot start any token": ("YAML indentation must use spaces, not tabs",),
    "found a tab character that violates indentation": ("YAML indentation must use spaces, not tabs",),
    "found undefined alias": ("an *alias needs a matching &anchor earlier in the same document",),
    "did not find expected '-' indicator": (
        "check this line's indentation: the items of one list, and the keys of one mapping, start in the same column",),
    "did not find expected key": (
        "check this line's indentation: the keys of one mapping start in the same column",),
    "did not find expected hexdecimal number": (
        "inside double quotes \\x, \\u and \\U start escapes: write \\\\ for one backslash, "
        "or use single quotes (e.g. for Windows paths)",),
    "found unknown escape character": (
        "inside double quotes a backslash starts an escape: write \\\\ for one backslash, "
        "or use single quotes (e.g. for Windows paths)",),
}


class Span(namedtuple("Span", "line col start end style", defaults=(None,))):
    """A node's place in the file: 1-based `line`/`col` (ints), `start`/`end` character offsets
    (ints), and the scalar `style`: None (plain), "'", '"', "|" or ">".

    A named tuple rather than a frozen dataclass: the loader makes one per
    node (about 100,000 for a 10,000-step file), and a tuple is built in a
    fraction of the time.  collections' rather than typing's: `dagu validate`
    does not import typing (issue 17).
    """

    __slots__ = ()


class _NodeTree:
    """A document's composed YAML nodes, walked by path when a span is asked for.

    Spans are needed only where a diagnostic or the plan's source map points,
    so the loader keeps the nodes rather than a span for each of the ~100,000
    paths of a 10,000-step file.  A mapping's keys are indexed the way
    `_Builder.mapping` reads them (first of a duplicated key, explicit keys
    before merged ones), so a path finds the node its value was built from.
    """

    def __init__(self, root: yaml.Node) -> None:
        self.root = root
        self._entries: dict[int, dict[Any, tuple[yaml.Node, yaml.Node]]] = {}

    def entries(self, node: yaml.MappingNode) -> dict[Any, tuple[yaml.Node, yaml.Node]]:
        found = self._entries.get(id(node))
        if found is None:
            found = self._entries[id(node)] = {}
            merged = []
            for key_node, value_node in node.value:
                if _is_merge(key_node):
                    merged.extend(_merge_sources(value_node))
                    continue
                found.setdefault(_key(key_node), (key_node, value_node))
            for key_node, value_node in merged:
                found.setdefault(_key(key_node), (key_node, value_node))
        return found

    def find(self, path: Path) -> tuple[yaml.Node | None, yaml.Node | None]:
        """(key node, value node) at `path`; the key node is None for the root and list items."""
        key_node, node = None, self.root
        for part in path:
            kind = type(node)
            if kind is yaml.SequenceNode:
                if not isinstance(part, int) or not 0 <= part < len(node.value):
                    return None, None
                key_node, node = None, node.value[part]
            elif kind is yaml.MappingNode:
                try:
                    key_node, node = self.entries(node)[part]
                except (KeyError, TypeError):
                    return None, None
            else:
                return None, None
        return key_node, node

    def walk(self) -> tuple[dict[Path, Span], dict[Path, Span]]:
        """Every path's span and key span, in the order the values are built."""
        spans: dict[Path, Span] = {}
        key_spans: dict[Path, Span] = {}

        def visit(node: yaml.Node, path: Path) -> None:
            spans[path] = _node_span(node)
            if type(node) is yaml.SequenceNode:
                for i, child in enumerate(node.value):
                    visit(child, path + (i,))
            elif type(node) is yaml.MappingNode:
                for key, (key_node, value_node) in self.entries(node).items():
                    key_spans[path + (key,)] = _node_span(key_node)
                    visit(value_node, path + (key,))

        visit(self.root, ())
        return spans, key_spans


class SpanIndex:
    """Spans by path, read from the node tree on first use; the passes may add more.

    Behaves as the dict it replaces (get, in, [], []=, items) for the
    value spans (`keys=False`) or the key spans (`keys=True`) of a document.
    """

    def __init__(self, tree: _NodeTree | None, keys: bool) -> None:
        self._tree = tree
        self._keys = keys
        self._known: dict[Path, Span | None] = {}
        self._added: dict[Path, Span] = {}  # set by the passes (legacy renames), in order

    def get(self, path: Path, default: Any = None) -> Any:
        try:
            span = self._known[path]
        except KeyError:
            span = self._known[path] = self._lookup(path)
        return default if span is None else span

    def _lookup(self, path: Path) -> Span | None:
        if self._tree is None:
            return None
        key_node, node = self._tree.find(path)
        target = key_node if self._keys else node
        return None if target is None else _node_span(target)

    def __contains__(self, path: Path) -> bool:
        return self.get(path) is not None

    def __getitem__(self, path: Path) -> Span:
        span = self.get(path)
        if span is None:
            raise KeyError(path)
        return span

    def __setitem__(self, path: Path, span: Span) -> None:
        self._known[path] = span
        self._added[path] = span

    def items(self) -> Iterable[tuple[Path, Span]]:
        every: dict[Path, Span] = {}
        if self._tree is not None:
            spans, key_spans = self._tree.walk()
            every = key_spans if self._keys else spans
        every.update(self._added)
        return every.items()


@dataclass
class Document:
    """One YAML document of a file, as data plus the spans of its nodes (see `SpanIndex`)."""

    data: Any
    index: int
    spans: SpanIndex = field(default_factory=lambda: SpanIndex(None, keys=False))
    key_spans: SpanIndex = field(default_factory=lambda: SpanIndex(None, keys=True))
    start: Span | None = None


@dataclass
class SourceFile:
    """A workflow file's text, its documents and a way to map offsets to lines."""

    path: str
    text: str
    sha256: str
    documents: list[Document]
    line_starts: list[int]
    unparsable: bool = False  # a YAML syntax error stopped the parser

    def line_text(self, line: int) -> str:
        """The text of a 1-based line, without its newline."""
        if line < 1 or line > len(self.line_starts):
            return ""
        start = self.line_starts[line - 1]
        end = self.line_starts[line] - 1 if line < len(self.line_starts) else len(self.text)
        return self.text[start:end].rstrip("\r\n")

    def position(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of a character offset in the file."""
        line = bisect.bisect_right(self.line_starts, offset)
        return line, offset - self.line_starts[line - 1] + 1

    def locate_in_scalar(self, span: Span, value: str, offset: int, length: int) -> tuple[int, int]:
        """The file position of `value[offset:offset+length]`, for a scalar whose span is `span`.

        Quoting, escapes and block indentation make the value differ from its
        source text, so the piece is searched for in the node's source slice
        (the n-th occurrence, n counted in the value).  Falls back to the
        node's own start when the piece cannot be found verbatim.
        """
        needle = value[offset : offset + max(length, 1)]
        raw = self.text[span.start : span.end]
        nth = value[:offset].count(needle) if needle else 0
        pos = -1
        for _ in range(nth + 1):
            pos = raw.find(needle, pos + 1)
            if pos < 0:
                return span.line, span.col
        return self.position(span.start + pos)


def _line_starts(text: str) -> list[int]:
    starts = [0]
    find = text.find
    i = find("\n")
    while i >= 0:
        starts.append(i + 1)
        i = find("\n", i + 1)
    return starts


def _node_span(node: yaml.Node) -> Span:
    mark = node.start_mark
    style = node.style if type(node) is yaml.ScalarNode else None
    return Span(mark.line + 1, mark.column + 1, mark.index, node.end_mark.index, style)


def _is_merge(key_node: yaml.Node) -> bool:
    return key_node.tag == _PLAIN and key_node.value == "<<" or key_node.tag == "tag:yaml.org,2002:merge"


def _merge_sources(value_node: yaml.Node) -> list[tuple[yaml.Node, yaml.Node]]:
    """The (key, value) nodes a `<<:` merge brings in, in order."""
    sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
    return [pair for src in sources if isinstance(src, yaml.MappingNode) for pair in src.value]


# How many values one document may build.  Aliases let a few hundred bytes stand for
# billions of values ("billion laughs"); a 10,000-step workflow builds about 100,000.
MAX_BUILT_VALUES = 2_000_000
MAX_DEPTH = 200  # nesting deeper than this is refused before Python's recursion limit is hit


class _TooLarge(Exception):
    """The document expands past MAX_BUILT_VALUES (or MAX_DEPTH) at `node`."""

    def __init__(self, node: yaml.Node, why: str) -> None:
        super().__init__(why)
        self.node = node
        self.why = why


class _Builder:
    """Turns composed YAML nodes into Python values (spans stay in the nodes, see `_NodeTree`)."""

    def __init__(self, reporter: Reporter, source: "SourceFile") -> None:
        self.reporter = reporter
        self.source = source
        self.budget = MAX_BUILT_VALUES
        self.depth = 0

    def build(self, node: yaml.Node) -> Any:
        kind = type(node)
        if kind is yaml.ScalarNode:
            value = _scalar(node)
            if type(value) is str and "\x00" in value:
                self.reporter.at_span(self.source, _node_span(node), "nul-byte", value=repr(value[:60]))
            return value
        self.budget -= len(node.value)
        if self.budget < 0:
            raise _TooLarge(node, f"more than {MAX_BUILT_VALUES} values once its aliases are expanded")
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _TooLarge(node, f"nested more than {MAX_DEPTH} levels deep")
            if kind is yaml.SequenceNode:
                build = self.build
                return [build(child) for child in node.value]
            return self.mapping(node)
        finally:
            self.depth -= 1

    def mapping(self, node: yaml.MappingNode) -> dict[str, Any]:
        out: dict[str, Any] = {}
        first_keys: dict[Any, yaml.Node] = {}
        merged: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            if _is_merge(key_node):
                merged.extend(_merge_sources(value_node))
                continue
            key = _key(key_node)
            if key in out:
                first = first_keys[key].start_mark.line + 1
                self.reporter.at_span(
                    self.source, _node_span(key_node), "duplicate-key",
                    key=key, where=f" (first at line {first})",
                )
                continue
            first_keys[key] = key_node
            out[key] = self.build(value_node)
        for key_node, value_node in merged:
            key = _key(key_node)
            if key not in out:  # explicit keys win over merged ones, as YAML says
                out[key] = self.build(value_node)
        return out


def _key(node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value = _scalar(node)
        return value if isinstance(value, str) else str(node.value)
    return "<complex key>"


def _scalar(node: yaml.ScalarNode) -> Any:
    tag, text = node.tag, node.value
    if tag == _PLAIN:
        tag = _plain_tag(text)
    if tag == _STR:
        return text
    if tag == "tag:yaml.org,2002:null":
        return None
    if tag == "tag:yaml.org,2002:bool":
        return text.lower() == "true"
    if tag == "tag:yaml.org,2002:int":
        return int(text, 8) if text.startswith("0o") else int(text, 0) if text.startswith("0x") else int(text)
    if tag == "tag:yaml.org,2002:float":
        low = text.lower()
        if low.endswith("inf"):
            return float("-inf") if low.startswith("-") else float("inf")
        return float(text)
    return text  # other tags (!!binary, custom): keep the text


def load_source(path: str, text: str, reporter: Reporter) -> SourceFile:
    """Parse every YAML document of `text`; problems go to `reporter`."""
    source = SourceFile(
        path=path,
        text=text,
        sha256=sha256_hex(text.encode("utf-8")),
        documents=[],
        line_starts=_line_starts(text),
    )
    try:
        nodes = list(yaml.compose_all(text, Loader=_CoreSchemaLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        reason = exc.problem or exc.context or "malformed YAML"
        notes = []
        if exc.context and exc.problem and exc.context_mark:
            notes.append(f"{exc.context} at line {exc.context_mark.line + 1}")
        notes.extend(_SYNTAX_HINTS.get(reason, ()))
        if reason == "found character that cannot start any token" and mark and text[mark.index:mark.index + 1] == "\t":
            notes.extend(_SYNTAX_HINTS["found a tab character that violates indentation"])
        reporter.at(source, line, col, "yaml-syntax", reason=reason, notes=notes)
        source.unparsable = True
        return source
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (NUL, other controls)
        line, col = source.position(exc.position) if 0 <= exc.position <= len(text) else (1, 1)
        char = chr(exc.character) if isinstance(exc.character, int) else str(exc.character)
        reporter.at(source, line, col, "yaml-syntax",
                    reason=f"character {char!r} is not allowed in a YAML file",
                    notes=["a NUL byte cannot be in a workflow file: remove it" if char == "\x00" else
                           "remove it; to put a control character in a value, use a double-quoted escape such as \\t"])
        source.unparsable = True
        return source
    except yaml.YAMLError as exc:  # pragma: no cover - other libyaml reader errors
        reporter.at(source, 1, 1, "yaml-syntax", reason=str(exc).splitlines()[0])
        source.unparsable = True
        return source
    except RecursionError:
        reporter.at(source, 1, 1, "yaml-too-large", reason=f"it is nested too deeply to read")
        source.unparsable = True
        return source
    for index, node in enumerate(nodes):
        if node is None:
            continue
        tree = _NodeTree(node)
        try:
            data = _Builder(reporter, source).build(node)
        except _TooLarge as exc:
            reporter.at_span(source, _node_span(exc.node), "yaml-too-large", reason=exc.why)
            source.unparsable = True
            return source
        doc = Document(data=data, index=index,
                       spans=SpanIndex(tree, keys=False), key_spans=SpanIndex(tree, keys=True))
        doc.start = doc.spans[()]
        source.documents.append(doc)
    return source


def read_source(path: str, reporter: Reporter, text: str | None = None) -> SourceFile | None:
    """Read and parse a file; an unreadable file is a diagnostic, not an exception.

    `text`: the file's would-be content (an editor's unsaved buffer), checked as if it were
    on disk at `path`, so its base config, called files and name resolve as they will."""
    if text is not None:
        if len(text.encode("utf-8", "surrogatepass")) > MAX_WORKFLOW_BYTES:
            reporter.plain(path, "unreadable-file", reason=f"larger than {MAX_WORKFLOW_BYTES} bytes")
            return None
        return load_source(path, text, reporter)
    try:
        text = read_regular(path).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        reporter.plain(path, "unreadable-file", reason=f"not UTF-8 text (byte {exc.start})")
        return None
    except OSError as exc:
        reporter.plain(path, "unreadable-file", reason=exc.strerror or str(exc))
        return None
    return load_source(path, text, reporter)
