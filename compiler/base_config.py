"""base.yaml: defaults shared by every DAG of a directory, merged under each DAG document.

Where it is.  `DAGU_BASE_CONFIG=PATH` names the file (an empty value: no base
config); otherwise `base.yaml`, else `base.yml`, in the DAG file's own
directory.  Upstream Dagu reads one base.yaml from its config home
(`~/.config/dagu/base.yaml`, `$DAGU_HOME/base.yaml`, `paths.base_config`,
`DAGU_BASE_CONFIG`) and a per-workspace `<dir>/<workspace>/base.yaml`
(server-admin/base-config.md); here it sits beside the DAGs it serves, so a
checkout of a DAG directory compiles the same on every machine.  The plan
embeds the merged result and records base.yaml in `Plan.dependencies`: the
runtime never reads it.

How it merges (upstream's "How Inheritance Works"):

- A key the DAG sets wins; a key it leaves out comes from the base, booleans
  included (an explicit `false` in the DAG wins over a base `true`).
- `env` is appended: the base's entries, then the DAG's, so a DAG entry of the
  same name wins and a DAG value may use a base one as `${NAME}`.
- Mappings of settings (`smtp`, `ssh`, `container`, `labels`, ...) merge key
  by key, recursively, as upstream merges its structs field by field; except
  `mail_on` and `retry_policy` (upstream: "full override"), and `schedule` and
  `params`, which are replaced whole (a half-inherited schedule or parameter
  list would be a surprise).  Other lists are replaced.
- `handler_on` merges per event: the DAG's `failure` replaces the base's, the
  base's other handlers stay.  Only a plan's main DAG gets the base's
  handlers; the other documents of a file and the files it calls are sub-DAGs,
  and upstream skips base handlers for sub-DAG runs (lifecycle-handlers.md,
  "Sub-DAG Handler Isolation") so one failure does not notify twice.
- `step_types` are the union of both; a name defined in both is an error at
  the DAG's definition, because upstream fails such a load with a
  duplicate-definition error rather than letting one silently win.
- `steps` and `name` are refused in a base: each DAG has its own.

Positions.  The merged document keeps, for each value taken from the base
and each `env` entry whose index moved, a route from its merged path to the
file and path it was read from; `OverlaidContext.where` follows the routes,
so a problem with a base value is reported at base.yaml:line:col and one with
the DAG's own values in the DAG file.  1.x spellings in base.yaml are
reported and rewritten once, when it is read, before any merge.
"""

from __future__ import annotations

import os
from dataclasses import field
from collections.abc import Iterable, Iterator, Mapping

from dagu.spec.records import dataclass
from dagu.compiler.context import DocContext
from dagu.compiler.diagnostics import Diagnostic, Reporter
from dagu.compiler.loader import Document, SourceFile, Span, SpanIndex, read_source

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any
else:
    Any = object  # the aliases below are built at run time; for type checkers this is typing.Any

Path = tuple[Any, ...]

BASE_CONFIG_NAMES = ("base.yaml", "base.yml")  # schedule/dag_files.py keeps the same rule
BASE_CONFIG_ENV = "DAGU_BASE_CONFIG"

_REPLACED = frozenset({"mail_on", "retry_policy", "schedule", "params"})
_REFUSED = {
    "steps": ("each DAG lists its own steps",
              "share a step with `step_types:` here and `type: NAME` in the DAGs"),
    "name": ("it would give every DAG of the directory the same name",
             "a DAG is named after its file unless the DAG file sets name:"),
}


@dataclass
class BaseConfig:
    """A base config as read and checked once per compile: its file and its one document."""

    source: SourceFile
    doc: Document

    @property
    def data(self) -> dict[str, Any]:
        return self.doc.data


@dataclass
class BaseConfigs:
    """The base configs one compile uses, each looked up, read and checked once.

    A DAG directory without a base config costs one stat per spelling
    (`base.yaml`, `base.yml`) per compile; files called from the same
    directory reuse the answer.
    """

    reporter: Reporter
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    _paths: dict[str, str | None] = field(default_factory=dict, init=False)  # DAG directory -> base path
    _loaded: dict[str, BaseConfig | None] = field(default_factory=dict, init=False)  # base path -> config

    def path_for(self, dag_file: str) -> str | None:
        """The base config a DAG file is merged over (absolute), or None."""
        directory = os.path.dirname(os.path.abspath(dag_file))
        if directory not in self._paths:
            self._paths[directory] = self._find(directory)
        return self._paths[directory]

    def _find(self, directory: str) -> str | None:
        named = self.environ.get(BASE_CONFIG_ENV)
        if named is not None:
            return os.path.abspath(named) if named else None
        for name in BASE_CONFIG_NAMES:
            path = os.path.join(directory, name)
            if os.path.isfile(path):
                return path
        return None

    def load(self, path: str) -> BaseConfig | None:
        """The checked base config at `path`; None when it holds nothing usable (reported)."""
        if path not in self._loaded:
            self._loaded[path] = self._read(path)
        return self._loaded[path]

    def _read(self, path: str) -> BaseConfig | None:
        if BASE_CONFIG_ENV in self.environ and not os.path.isfile(path):
            from dagu.compiler.codes import CODES

            entry = CODES["base-config-missing"]
            self.reporter.add(Diagnostic(
                file=path, line=1, col=1, severity=entry.severity, code=entry.name,
                message=entry.template.format(value=repr(self.environ[BASE_CONFIG_ENV]), reason="is not a file"),
                notes=(f"unset {BASE_CONFIG_ENV} to use base.yaml beside each DAG, or set it empty for none",)))
            return None
        source = read_source(_display_path(path), self.reporter)
        if source is None or source.unparsable or not source.documents:
            return None
        doc = source.documents[0]
        for extra in source.documents[1:]:
            self.reporter.at_span(source, extra.spans[()], "base-config-shape",
                                  actual=f"found document {extra.index + 1}",
                                  notes=["put every default in the first document; `---` documents are DAGs "
                                         "of workflow files"])
        if not isinstance(doc.data, dict):
            kind = type(doc.data).__name__ if doc.data is not None else "nothing"
            self.reporter.at_span(source, doc.spans[()], "base-config-shape", actual=f"got {kind}",
                                  notes=["for example: env: [LOG_LEVEL=info]"])
            return None
        from dagu.compiler.spellings import normalize_document

        ctx = DocContext(source, doc, self.reporter)
        for key, (reason, hint) in _REFUSED.items():
            if key in doc.data:
                ctx.report((key,), "base-config-key", at_key=True, key=key, reason=reason, notes=[hint])
                del doc.data[key]
        normalize_document(ctx, os.path.dirname(path))  # 1.x spellings: reported here, once
        return BaseConfig(source, doc)

    def used(self) -> dict[str, str]:
        """Each base config read, by absolute path, with its SHA-256 (for Plan.dependencies)."""
        return {os.path.abspath(p): b.source.sha256 for p, b in sorted(self._loaded.items()) if b is not None}


def is_base_config(path: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether a file found in a DAG directory is a base config rather than a DAG (no stat)."""
    environ = os.environ if environ is None else environ
    named = environ.get(BASE_CONFIG_ENV)
    if named:
        return os.path.abspath(path) == os.path.abspath(named) or os.path.basename(path) in BASE_CONFIG_NAMES
    return os.path.basename(path) in BASE_CONFIG_NAMES


def _display_path(path: str) -> str:
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


# ---------------------------------------------------------------------------
# Merging, with a route from each merged path to where its value was read.
# ---------------------------------------------------------------------------


@dataclass
class Routes:
    """Merged path prefix -> (read from the base?, path in that file); anything else is the DAG's own."""

    table: dict[Path, tuple[bool, Path]] = field(default_factory=dict)
    tops: set[Any] = field(default_factory=set)  # top-level keys with any route: the rest skip the lookup
    depth: int = 0

    def add(self, merged: Path, from_base: bool, original: Path) -> None:
        self.table[merged] = (from_base, original)
        self.tops.add(merged[0])
        self.depth = max(self.depth, len(merged))

    def resolve(self, path: Path) -> tuple[bool, Path]:
        if not path or path[0] not in self.tops:
            return False, path
        for k in range(min(len(path), self.depth), 0, -1):
            hit = self.table.get(path[:k])
            if hit is not None:
                return hit[0], hit[1] + path[k:]
        return False, path


class RoutedSpans(SpanIndex):
    """The spans of a merged document: each path looked up in the file its value came from.

    `items()` lists the DAG file's own nodes only (the callers rewrite the DAG
    file's text, never base.yaml's).
    """

    def __init__(self, routes: Routes, dag: SpanIndex, base: SpanIndex, keys: bool) -> None:
        super().__init__(None, keys)
        self._routes, self._dag, self._base = routes, dag, base

    def get(self, path: Path, default: Any = None) -> Any:
        from_base, where = self._routes.resolve(path)
        return (self._base if from_base else self._dag).get(where, default)

    def __setitem__(self, path: Path, span: Span) -> None:
        from_base, where = self._routes.resolve(path)
        (self._base if from_base else self._dag)[where] = span

    def items(self) -> Iterable[tuple[Path, Span]]:
        return self._dag.items()


class OverlaidContext(DocContext):
    """A DAG document merged over its base config; reports go to the file a value came from."""

    def __init__(self, dag: DocContext, merged: Document, base: BaseConfig, routes: Routes) -> None:
        super().__init__(dag.source, merged, dag.reporter)
        self.dag_doc, self.base, self.routes = dag.doc, base, routes

    def where(self, path: Path) -> tuple[SourceFile, Document, Path]:
        from_base, original = self.routes.resolve(path)
        if from_base:
            return self.base.source, self.base.doc, original
        return self.source, self.dag_doc, original


def overlay(base: BaseConfig, ctx: DocContext, main: bool) -> DocContext:
    """`ctx`'s document with the base config merged under it (see the module docstring).

    `main`: the document is the plan's main DAG, which alone gets the base's
    handler_on.  A document that is not a mapping is left as it is (the
    document pass reports it).
    """
    if not isinstance(ctx.doc.data, dict):
        return ctx
    routes = Routes()
    data = _merge_top(base, ctx, routes, main)
    doc = ctx.doc
    merged = Document(data=data, index=doc.index,
                      spans=RoutedSpans(routes, doc.spans, base.doc.spans, keys=False),
                      key_spans=RoutedSpans(routes, doc.key_spans, base.doc.key_spans, keys=True),
                      start=doc.start)
    return OverlaidContext(ctx, merged, base, routes)


def _merge_top(base: BaseConfig, ctx: DocContext, routes: Routes, main: bool) -> dict[str, Any]:
    own: dict[str, Any] = ctx.doc.data
    out = dict(own)  # the DAG's keys in its order; its values are used as they are
    for key, value in base.data.items():
        if key == "handler_on" and not main:
            continue
        path = (key,)
        if own.get(key) is None:  # left out, or written with no value: the base's
            out[key] = _copy(value)
            routes.add(path, True, path)
        elif key == "env":
            out[key] = _merge_env(value, own[key], routes)
        elif key in ("handler_on", "step_types") and isinstance(value, dict) and isinstance(own[key], dict):
            if key == "step_types":
                _refuse_redefined(base, ctx, value, own[key])
            out[key] = _merge_named(path, value, own[key], routes)
        elif key not in _REPLACED and isinstance(value, dict) and isinstance(own[key], dict):
            out[key] = _merge_mapping(path, value, own[key], routes)
    return out


def _merge_named(path: Path, base: dict[str, Any], own: dict[str, Any], routes: Routes) -> dict[str, Any]:
    """handler_on and step_types: whole entries, the DAG's where both have one."""
    out = dict(own)
    for name, body in base.items():
        if own.get(name) is None:
            out[name] = _copy(body)
            routes.add(path + (name,), True, path + (name,))
    return out


def _merge_mapping(path: Path, base: dict[str, Any], own: dict[str, Any], routes: Routes) -> dict[str, Any]:
    out = dict(own)
    for key, value in base.items():
        if own.get(key) is None:
            out[key] = _copy(value)
            routes.add(path + (key,), True, path + (key,))
        elif isinstance(value, dict) and isinstance(own[key], dict):
            out[key] = _merge_mapping(path + (key,), value, own[key], routes)
    return out


def _merge_env(base: Any, own: Any, routes: Routes) -> Any:
    """The base's entries, then the DAG's, as one list of entries (a map becomes single-key maps)."""
    if not isinstance(base, (list, dict)) or not isinstance(own, (list, dict)):
        return own  # not an env at all: the DAG's value, which the schema pass reports
    out: list[Any] = []
    for from_base, env in ((True, base), (False, own)):
        for item, origin, key in _env_items(env):
            merged = ("env", len(out))
            out.append(_copy(item) if from_base else item)
            routes.add(merged, from_base, origin)
            if key is not None:
                routes.add(merged + (key,), from_base, origin)
    return out


def _env_items(env: list[Any] | dict[str, Any]) -> Iterator[tuple[Any, Path, str | None]]:
    """(entry, its path in its file, its name when it came from a map) for each env entry."""
    if isinstance(env, dict):
        for key, value in env.items():
            yield {key: value}, ("env", key), key
    else:
        for i, item in enumerate(env):
            yield item, ("env", i), None


def _refuse_redefined(base: BaseConfig, ctx: DocContext, base_types: dict[str, Any],
                      own_types: dict[str, Any]) -> None:
    for name in own_types:
        if name in base_types:
            span = base.doc.key_spans.get(("step_types", name)) or base.doc.start
            ctx.report(("step_types", name), "duplicate-step-type", at_key=True, name=name,
                       where=f"({base.source.path}:{span.line}:{span.col})",
                       notes=[f"rename this one, or delete it to use the base config's '{name}'"])


def _copy(value: Any) -> Any:
    """A fresh copy of a base value: the passes rewrite documents in place, and the base is shared."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
