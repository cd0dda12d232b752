"""The plan file format: the one seam between the compiler, the runtime and the web.

The compiler is the only code that reads YAML; everything else reads plans.  A
plan is a fully resolved workflow (defaults applied, dependencies explicit,
expressions pre-parsed into a small JSON AST) so that the runtime needs
neither lark nor networkx nor jsonschema, and so that a plan compiled in CI is
exactly what runs on the edge machine.

This module must stay small and import only the standard library: the runtime,
the web and the frozen binary all load it.

Templates: every user string that may hold expressions is stored as a list of
parts, each either literal text (a JSON string) or a node:
``{"var": NAME, "path": [...]}``, ``{"step": ID, "field": F, "path": [...]}``,
``{"cmd": [parts]}`` (backtick substitution) or ``{"esc": "$"}``.  Inside free
form executor input (``Step.config``) a string that holds expressions is stored
as ``{"$expr": parts}`` and plain strings stay strings.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import types
from dataclasses import field

from dagu.spec.records import dataclass

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any

PLAN_VERSION = 1
"""The format this dagu writes."""

OLDEST_READABLE_VERSION = 1
"""The oldest format this dagu still reads; older plans must be recompiled."""

Template = list  # a list of template parts, see the module docstring


class PlanError(Exception):
    """A plan file that cannot be used: unreadable, damaged, or from another version."""


@dataclass(frozen=True)
class SourceRef:
    """Where a plan element came from, so runtime errors point back at the YAML."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Matcher:
    """A value to compare against: exact text, a regex (`re:` prefix) searched anywhere, or a
    number (`num:>=0.9`: `compare` holds the operator, `pattern` the threshold)."""

    pattern: Template
    regex: bool = False
    compare: str | None = None


@dataclass(frozen=True)
class Condition:
    """A precondition: a command that must exit 0, or a value compared with `expected`."""

    condition: Template
    expected: Matcher | None = None
    negate: bool = False


@dataclass(frozen=True)
class EnvVar:
    """One environment entry; entries are evaluated in order, so later ones see earlier ones."""

    name: str
    value: Template


@dataclass(frozen=True)
class Param:
    """A declared parameter.  Positional params have numeric names ("1", "2", ...)."""

    name: str
    default: Template | None = None
    positional: bool = False
    type: str = "string"
    required: bool = False
    enum: tuple[Any, ...] = ()
    description: str | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """How often and when a failed step is run again."""

    limit: int = 0
    interval_sec: float = 0
    exit_codes: tuple[int, ...] = ()
    backoff: float = 0
    max_interval_sec: float | None = None


@dataclass(frozen=True)
class RepeatPolicy:
    """When a step runs again after it finished: `while` a condition holds, or `until` it does."""

    mode: str  # "while" | "until"
    condition: Condition | None = None
    exit_codes: tuple[int, ...] = ()
    interval_sec: float = 0
    backoff: float = 0
    max_interval_sec: float | None = None
    limit: int | None = None


@dataclass(frozen=True)
class ContinueOn:
    """When the run goes on past this step although it did not succeed."""

    failure: bool = False
    skipped: bool = False
    exit_codes: tuple[int, ...] = ()
    output: tuple[Matcher, ...] = ()
    mark_success: bool = False


@dataclass(frozen=True)
class Call:
    """A sub-DAG run: the target is a key of `Plan.dags`."""

    dag: str
    params: tuple[EnvVar, ...] = ()


@dataclass(frozen=True)
class Parallel:
    """Run the called DAG once per item: literal items, or a template that yields a JSON list."""

    items: tuple[Any, ...] = ()
    items_from: Template | None = None
    max_concurrent: int = 10


@dataclass(frozen=True)
class Route:
    """A router branch: when the router's value matches, these steps run."""

    match: Matcher
    targets: tuple[str, ...]


@dataclass(frozen=True)
class Step:
    """One unit of work, with every default already applied."""

    id: str
    name: str
    type: str = "command"
    description: str | None = None
    command: tuple[Template, ...] = ()
    script: Template | None = None
    shell: tuple[str, ...] = ()
    working_dir: Template | None = None
    env: tuple[EnvVar, ...] = ()
    depends: tuple[str, ...] = ()
    output: str | None = None
    stdout: Template | None = None
    stderr: Template | None = None
    preconditions: tuple[Condition, ...] = ()
    continue_on: ContinueOn = field(default_factory=ContinueOn)
    retry_policy: RetryPolicy | None = None
    repeat_policy: RepeatPolicy | None = None
    timeout_sec: float | None = None
    signal_on_stop: str = "SIGTERM"
    mail_on_error: bool = False
    max_output_size: int = 1048576
    call: Call | None = None
    parallel: Parallel | None = None
    value: Template | None = None
    routes: tuple[Route, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CronEntry:
    """One cron expression with the time zone it is read in (None: the host's)."""

    expr: str
    tz: str | None = None


@dataclass(frozen=True)
class Schedule:
    """When the scheduler starts, stops and restarts the DAG."""

    start: tuple[CronEntry, ...] = ()
    stop: tuple[CronEntry, ...] = ()
    restart: tuple[CronEntry, ...] = ()


@dataclass(frozen=True)
class Dag:
    """One workflow, resolved.  `order` is a topological order of `steps`."""

    name: str
    type: str
    base_dir: str
    file: str
    steps: tuple[Step, ...]
    order: tuple[str, ...]
    description: str | None = None
    params: tuple[Param, ...] = ()
    env: tuple[EnvVar, ...] = ()
    dotenv: tuple[str, ...] = ()
    working_dir: Template | None = None
    shell: tuple[str, ...] = ()
    schedule: Schedule = field(default_factory=Schedule)
    skip_if_successful: bool = False
    catchup_window_sec: int | None = None
    overlap_policy: str = "skip"
    preconditions: tuple[Condition, ...] = ()
    timeout_sec: float | None = None
    delay_sec: float = 0
    max_active_steps: int | None = None
    max_active_runs: int = 1
    max_output_size: int = 1048576
    queue: str | None = None
    tags: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    group: str | None = None
    hist_retention_days: int | None = None  # None: the data dir's default (settings.py)
    hist_retention_runs: int | None = None
    handlers: dict[str, Step] = field(default_factory=dict)
    retry_policy: RetryPolicy | None = None  # the DAG-level one (also each step's default): a lost worker's run
    settings: dict[str, Any] = field(default_factory=dict)
    source_map: dict[str, SourceRef] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """A compiled file: its main DAG (`root`) and every DAG it can call, by name."""

    plan_version: int
    compiler: str
    source: str
    source_sha256: str
    root: str
    dags: dict[str, Dag]
    dependencies: dict[str, str] = field(default_factory=dict)  # other files read: path -> sha256

    @property
    def main(self) -> Dag:
        return self.dags[self.root]




# --------------------------------------------------------------------------
# JSON encoding.  Generic over the dataclasses above, driven by their type
# hints, so adding a field needs no serializer change.
# --------------------------------------------------------------------------


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _encode(value: Any) -> Any:
    cls = type(value)
    if cls in _SCALARS:  # most of a plan: checked first, without a dataclass lookup
        return value
    names = _FIELD_NAMES.get(cls)
    if names is None:  # first time this type is seen: remember whether it is a dataclass
        names = _field_names(cls) if dataclasses.is_dataclass(cls) else _FIELD_NAMES.setdefault(cls, False)
    if names is not False:
        fields = value.__dict__  # plan dataclasses are frozen, without slots
        return {name: item if type(item) in _SCALARS else _encode(item)
                for name in names if (item := fields[name]) is not None}
    if isinstance(value, (list, tuple)):
        return [v if type(v) in _SCALARS else _encode(v) for v in value]
    if isinstance(value, dict):
        return {k: v if type(v) in _SCALARS else _encode(v) for k, v in value.items()}
    return value


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """The plan as plain JSON data (None fields omitted)."""
    return _encode(plan)


def _fields_of(value: Any) -> dict[str, Any]:
    """json's hook for the plan's dataclasses: their fields, None ones left out.

    The C encoder walks the lists, tuples and dicts itself and calls back only
    for the dataclasses, which is about twice as fast as building the whole
    tree with `plan_to_dict` first (the bytes are the same).
    """
    names = _FIELD_NAMES.get(type(value)) or (
        _field_names(type(value)) if dataclasses.is_dataclass(value) and not isinstance(value, type) else None)
    if not names:
        raise TypeError(f"{type(value).__name__} is not part of a plan")
    fields = value.__dict__
    return {name: item for name in names if (item := fields[name]) is not None}


def dump_plan(plan: Plan) -> str:
    """Serialize deterministically: the same plan always gives the same bytes.

    No indentation: `indent` makes json fall back to its pure-Python encoder,
    which tripled the time to write a 10,000-step plan.  `python -m json.tool`
    pretty-prints a plan for reading.
    """
    paused = gc.isenabled()
    gc.disable()  # the JSON tree is all live objects: collector passes over it are wasted time
    try:
        return json.dumps(plan, default=_fields_of, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False) + "\n"
    finally:
        if paused:
            gc.enable()


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """The field types of a plan class, evaluated from their annotation strings.

    What `typing.get_type_hints` gives, without importing typing for it (2-3 ms of every
    `dagu start`, issue 17): the annotations here are builtins, plan classes, `X | None`,
    `tuple[X, ...]` and `dict[str, X]`; `Any` reads as `object`, which decodes as is."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = {f.name: _evaluated(f.type) if isinstance(f.type, str) else f.type for f in dataclasses.fields(cls)}
        _HINTS[cls] = hints
    return hints


_EVALUATED: dict[str, Any] = {}


def _evaluated(annotation: str) -> Any:
    """One annotation string evaluated, once: the plan's classes repeat a few dozen of them."""
    found = _EVALUATED.get(annotation)
    if found is None:
        found = _EVALUATED[annotation] = eval(annotation, {**globals(), "Any": object})  # noqa: S307
    return found


def _decode(tp: Any, data: Any, where: str) -> Any:
    if isinstance(tp, types.UnionType):
        options = [a for a in tp.__args__ if a is not type(None)]
        if data is None:
            return None
        return _decode(options[0], data, where)
    if dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise PlanError(f"{where}: expected an object")
        hints = _hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in data:
                kwargs[f.name] = _decode(hints[f.name], data[f.name], f"{where}.{f.name}")
        try:
            return tp(**kwargs)
        except TypeError as exc:
            raise PlanError(f"{where}: {exc}") from None
    origin = getattr(tp, "__origin__", None)  # tuple[X, ...] and dict[K, V] are types.GenericAlias
    if origin is tuple:
        if not isinstance(data, list):
            raise PlanError(f"{where}: expected a list")
        item_tp = tp.__args__[0]
        return tuple(_decode(item_tp, v, f"{where}[{i}]") for i, v in enumerate(data))
    if origin is dict:
        if not isinstance(data, dict):
            raise PlanError(f"{where}: expected an object")
        val_tp = tp.__args__[1]
        return {k: _decode(val_tp, v, f"{where}.{k}") for k, v in data.items()}
    return data


def plan_from_dict(data: Any) -> Plan:
    """Build a Plan from parsed JSON, refusing versions this dagu cannot read."""
    if not isinstance(data, dict) or "plan_version" not in data:
        raise PlanError("not a dagu plan file (no plan_version)")
    version = data["plan_version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise PlanError(f"plan_version must be an integer, got {version!r}")
    if version > PLAN_VERSION:
        raise PlanError(
            f"plan format {version} is newer than this dagu reads ({PLAN_VERSION}); "
            "recompile the workflow with this dagu (`dagu compile FILE`) or upgrade dagu"
        )
    if version < OLDEST_READABLE_VERSION:
        raise PlanError(
            f"plan format {version} is older than this dagu reads ({OLDEST_READABLE_VERSION}); "
            "recompile the workflow (`dagu compile FILE`)"
        )
    return _decode(Plan, data, "plan")


def load_plan(path: str) -> Plan:
    """Read a plan file, with an error that names the file when it is damaged."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise PlanError(f"{path}: cannot read plan: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise PlanError(f"{path}:{exc.lineno}:{exc.colno}: damaged plan file: {exc.msg}") from None
    try:
        return plan_from_dict(data)
    except PlanError as exc:
        raise PlanError(f"{path}: {exc}") from None
