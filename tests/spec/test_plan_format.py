"""Tests for spec/plan.py and spec/plan.schema.json: the plan file, the seam between compiler and runtime.

The schema is the plan format's contract for everything that reads plans
without this package (the web UI's JavaScript, other tools).  So besides "the
schema is a valid schema" these tests pin that it matches the dataclasses field
for field (a field added to plan.py without the schema fails here), that every
plan the compiler writes is valid against it and survives a round trip, that
plans are deterministic (no timestamps, no random values, no dependence on
where the file sits beyond its own path), and that plans from another format
version or damaged files are refused with a message a user can act on.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import shutil
import time
from importlib.resources import files
from pathlib import Path
from typing import Any, Iterator

import pytest
from jsonschema import Draft202012Validator

from dagu.compiler.diagnostics import Diagnostic, Reporter
from dagu.compiler.pipeline import CompileResult, compile_file
from dagu.spec import plan as plan_module
from dagu.spec.plan import PLAN_VERSION, Plan, PlanError, dump_plan, load_plan, plan_from_dict

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))
CASES_DIR = Path("/work/shared/conformance/cases")
CASES = sorted(CASES_DIR.glob("*.yaml"))

# A workflow that sets the fields the examples and conformance cases leave at
# their defaults (handlers, schedules with a time zone, retry and repeat
# policies, fan-out, routers, executor input with expressions, a call to
# another file), so that the schema's less common branches are exercised too.
RICH_WORKFLOW = """\
name: rich
description: Exercises most plan fields.
type: graph
group: demo
queue: batch
tags: [etl, daily]
labels:
  team: data
catchup_window: 6h
schedule:
  start: "CRON_TZ=Europe/Berlin 0 2 * * *"
  stop: "0 4 * * *"
params:
  - name: REGION
    type: string
    default: eu
    enum: [eu, us]
    description: Where to deploy.
  - COUNT=3
env:
  - BASE: /tmp/${REGION}
timeout_sec: 600
delay_sec: 1
max_active_steps: 2
mail_on:
  failure: true
preconditions:
  - condition: "${REGION}"
    expected: "re:^(eu|us)$"
handler_on:
  failure:
    command: echo failed
  exit:
    command: echo done
steps:
  - id: fetch
    description: Fetch the list.
    command: echo '["a","b"]'
    output: ITEMS
    stdout: fetch.out
    retry_policy:
      limit: 2
      interval_sec: 1
      backoff: true
      max_interval_sec: 10
      exit_code: [1, 2]
    repeat_policy:
      repeat: until
      condition: "`cat state.txt`"
      expected: ready
      interval_sec: 1
      max_interval_sec: 5
      limit: 3
    continue_on:
      output: ["re:warn.*", skipped-it]
      mark_success: true
  - id: fan
    depends: [fetch]
    call: child
    parallel:
      items: ${ITEMS}
      max_concurrent: 2
    params: "X=${REGION}"
  - id: fan_literal
    depends: [fetch]
    call: child
    parallel: [one, "${REGION}", {k: "${COUNT}"}]
  - id: route
    type: router
    depends: [fetch]
    value: ${fetch.exit_code}
    routes:
      "0": [ok]
      "re:^[1-9]": [bad]
  - id: ok
    depends: [route]
    command: echo ok \\$HOME `date`
  - id: bad
    depends: [route]
    script: |
      echo bad ${route.stdout}
    signal_on_stop: INT
    timeout_sec: 5
  - id: notify
    type: http
    depends: [ok]
    with:
      url: "https://example.invalid/${REGION}"
      method: POST
      headers: {X-Count: "${COUNT}", Plain: text}
      timeout: 5
"""

CHILD_WORKFLOW = """\
params:
  - X: none
steps:
  - command: echo child ${ITEM} ${X}
"""


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


@functools.cache
def load_schema() -> dict[str, Any]:
    return json.loads((files("dagu.spec") / "plan.schema.json").read_text(encoding="utf-8"))


@functools.cache
def validator() -> Draft202012Validator:
    return Draft202012Validator(load_schema())


def plan_dataclasses() -> list[type]:
    """The dataclasses of dagu.spec.plan, in the order the module defines them."""
    return [obj for obj in vars(plan_module).values()
            if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == plan_module.__name__]


def required_fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]


def schema_drift(schema: dict[str, Any], cls: type) -> list[str]:
    """How the schema's `$defs` entry for `cls` differs from the dataclass (empty: they agree)."""
    entry = schema.get("$defs", {}).get(cls.__name__)
    if entry is None:
        return [f"$defs has no entry {cls.__name__!r}"]
    problems = []
    fields = [f.name for f in dataclasses.fields(cls)]
    props = list(entry.get("properties", {}))
    if missing := [f for f in fields if f not in props]:
        problems.append(f"{cls.__name__}: fields missing from the schema: {missing}")
    if extra := [p for p in props if p not in fields]:
        problems.append(f"{cls.__name__}: schema properties that are not fields: {extra}")
    if props != fields and not missing and not extra:
        problems.append(f"{cls.__name__}: properties are not in field order: {props}")
    if entry.get("required") != required_fields(cls):
        problems.append(f"{cls.__name__}: required is {entry.get('required')}, fields without defaults are "
                        f"{required_fields(cls)}")
    if entry.get("additionalProperties") is not False:
        problems.append(f"{cls.__name__}: additionalProperties is not false")
    return problems


def properties_without_description(node: Any, where: str = "#") -> Iterator[str]:
    """JSON pointers of schema properties that do not explain themselves."""
    if isinstance(node, dict):
        for name, sub in node.get("properties", {}).items():
            if not (isinstance(sub, dict) and isinstance(sub.get("description"), str) and sub["description"].strip()):
                yield f"{where}/properties/{name}"
        for key, sub in node.items():
            yield from properties_without_description(sub, f"{where}/{key}")
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            yield from properties_without_description(sub, f"{where}/{i}")


@functools.cache
def compiled(path: str) -> CompileResult:
    return compile_file(path)


def compiled_plan(path: Path) -> Plan:
    result = compiled(str(path))
    assert result.ok and result.plan is not None, "\n".join(str(d) for d in result.diagnostics)
    return result.plan


@functools.cache
def conformance_plans() -> dict[str, Plan]:
    """Plans of the conformance cases that compile; the others are invalid on purpose."""
    plans = {}
    for path in CASES:
        result = compiled(str(path))
        if result.ok and result.plan is not None:
            plans[path.name] = result.plan
    return plans


@pytest.fixture(scope="module")
def rich_plan(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    d = tmp_path_factory.mktemp("rich")
    (d / "rich.yaml").write_text(RICH_WORKFLOW, encoding="utf-8")
    (d / "child.yaml").write_text(CHILD_WORKFLOW, encoding="utf-8")
    result = compile_file(str(d / "rich.yaml"), _AsIfEveryTypeRan())
    assert result.ok, "\n".join(str(x) for x in result.diagnostics)
    return result.plan


class _AsIfEveryTypeRan(Reporter):
    """The rich workflow's `type: http` step carries the only expression-bearing `with:` block; this
    build has no http executor (a compile error), but the plan format must still carry such input."""

    def add(self, diag: Diagnostic) -> None:
        if diag.code != "unsupported-step-type":
            super().add(diag)


@pytest.fixture(scope="module")
def all_plans(rich_plan: Plan) -> dict[str, Plan]:
    """Every plan these tests check: the examples, the conformance cases that compile, the rich workflow."""
    plans = {f"examples/{p.relative_to(ROOT / 'examples')}": compiled_plan(p) for p in EXAMPLES}
    plans.update({f"conformance/{name}": plan for name, plan in conformance_plans().items()})
    plans["rich.yaml"] = rich_plan
    return plans


def schema_errors(data: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:300]}"
            for e in sorted(validator().iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))]


example_params = [pytest.param(p, id=p.name) for p in EXAMPLES] or [
    pytest.param(None, marks=pytest.mark.skip(reason="no examples/*.yaml yet"), id="no-examples")]


# --------------------------------------------------------------------------
# The schema itself
# --------------------------------------------------------------------------


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == "https://dagu.dev/schemas/plan.schema.json"
    assert schema["$ref"] == "#/$defs/Plan"


def test_schema_matches_every_plan_dataclass() -> None:
    schema = load_schema()
    classes = plan_dataclasses()
    assert {c.__name__ for c in classes} >= {"Plan", "Dag", "Step", "SourceRef"}
    problems = [p for cls in classes for p in schema_drift(schema, cls)]
    assert problems == []


def test_schema_defs_follow_the_dataclass_order() -> None:
    names = [c.__name__ for c in plan_dataclasses()]
    defs = list(load_schema()["$defs"])
    assert [d for d in defs if d in names] == names
    # The JSON-only shapes (templates and free data) come first, as Template does in plan.py.
    assert defs[:3] == ["template", "part", "data"]
    assert set(defs) - set(names) == {"template", "part", "data"}


def test_schema_drift_check_catches_an_added_field() -> None:
    @dataclasses.dataclass(frozen=True)
    class SourceRef:
        file: str
        line: int
        col: int
        end_line: int  # added without touching the schema

    assert schema_drift(load_schema(), SourceRef) == [
        "SourceRef: fields missing from the schema: ['end_line']",
        "SourceRef: required is ['file', 'line', 'col'], fields without defaults are "
        "['file', 'line', 'col', 'end_line']",
    ]


def test_schema_plan_version_is_any_integer_from_one() -> None:
    version = load_schema()["$defs"]["Plan"]["properties"]["plan_version"]
    assert version["type"] == "integer" and version["minimum"] == 1 and "const" not in version


def test_every_schema_property_has_a_description() -> None:
    assert list(properties_without_description(load_schema())) == []


@pytest.mark.parametrize(("part", "valid"), [
    ("text", True),
    ({"var": "A", "path": ["x", 0]}, True),
    ({"var": "1", "path": []}, True),
    ({"step": "build", "field": "exit_code", "path": []}, True),
    ({"cmd": ["date +%F"]}, True),
    ({"cmd": [{"var": "X", "path": []}]}, True),
    ({"esc": "$"}, True),
    ({"var": "A"}, False),  # path is always written
    ({"var": "A", "path": [-1]}, False),
    ({"step": "build", "field": "status", "path": []}, False),
    ({"esc": "#"}, False),
    ({"cmd": "date"}, False),
    ({"var": "A", "path": [], "extra": 1}, False),
    (3, False),
])
def test_template_parts(part: Any, valid: bool) -> None:
    template = {"$ref": "#/$defs/template", "$defs": load_schema()["$defs"]}
    assert Draft202012Validator(template).is_valid([part]) is valid


@pytest.mark.parametrize(("value", "valid"), [
    ({"url": "https://x", "n": 1, "ok": True, "none": None, "list": [1, "a"]}, True),
    ({"url": {"$expr": ["https://x/", {"var": "A", "path": []}]}}, True),
    ({"deep": [{"h": {"$expr": [{"esc": "$"}]}}]}, True),
    ({"url": {"$expr": "not a template"}}, False),
    ({"url": {"$expr": [], "other": 1}}, False),
])
def test_free_data_marks_expressions(value: Any, valid: bool) -> None:
    config = {"$ref": "#/$defs/Step/properties/config", "$defs": load_schema()["$defs"]}
    assert Draft202012Validator(config).is_valid(value) is valid


# --------------------------------------------------------------------------
# Plans the compiler writes
# --------------------------------------------------------------------------


@pytest.mark.parametrize("path", example_params)
def test_example_plan_matches_schema(path: Path) -> None:
    data = json.loads(dump_plan(compiled_plan(path)))
    assert schema_errors(data) == []


@pytest.mark.parametrize("path", example_params)
def test_example_plan_round_trips(path: Path) -> None:
    text = dump_plan(compiled_plan(path))
    assert dump_plan(plan_from_dict(json.loads(text))) == text


def test_conformance_cases_compile() -> None:
    if not CASES:
        pytest.skip(f"no conformance cases in {CASES_DIR}")
    # Only the cases that test invalid files fail to compile: most must give a plan.
    assert len(conformance_plans()) >= len(CASES) * 3 // 4


def test_every_plan_matches_schema(all_plans: dict[str, Plan]) -> None:
    errors = {name: errs for name, plan in all_plans.items() if (errs := schema_errors(json.loads(dump_plan(plan))))}
    assert errors == {}


def test_every_plan_round_trips(all_plans: dict[str, Plan]) -> None:
    for name, plan in all_plans.items():
        text = dump_plan(plan)
        again = plan_from_dict(json.loads(text))
        assert dump_plan(again) == text, name
        assert again == plan, name


def test_rich_plan_uses_the_less_common_shapes(rich_plan: Plan) -> None:
    """The rich workflow really reaches the branches it is there for."""
    dag = rich_plan.main
    steps = {s.id: s for s in dag.steps}
    assert set(dag.handlers) == {"failure", "exit"}
    assert dag.schedule.start[0].tz == "Europe/Berlin"
    assert steps["fan"].parallel.items_from == [{"var": "ITEMS", "path": []}]
    assert steps["route"].value == [{"step": "fetch", "field": "exit_code", "path": []}]
    assert steps["notify"].config["url"] == {"$expr": ["https://example.invalid/", {"var": "REGION", "path": []}]}
    assert steps["notify"].config["method"] == "POST"
    assert list(rich_plan.dependencies) == [str(Path(rich_plan.source).with_name("child.yaml"))]


# --------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------

_ISO_DATE = re.compile(r"\b(19|20)\d\d-[01]\d-[0-3]\d")
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I)


def clock_or_random_values(data: Any, now: float, source: str) -> Iterator[Any]:
    """Values that look like a time stamp or a random id and are not written in the source."""
    if isinstance(data, dict):
        for v in data.values():
            yield from clock_or_random_values(v, now, source)
    elif isinstance(data, list):
        for v in data:
            yield from clock_or_random_values(v, now, source)
    elif isinstance(data, str):
        for pattern in (_ISO_DATE, _UUID, re.compile(time.strftime("%Y%m%d"))):
            if any(m.group() not in source for m in pattern.finditer(data)):
                yield data
    elif isinstance(data, (int, float)) and not isinstance(data, bool) and str(int(data)) not in source:
        if now - 400 * 86400 <= data <= now + 86400 or now * 1000 - 400 * 86400e3 <= data <= now * 1000 + 86400e3:
            yield data


def test_compiling_twice_gives_identical_bytes(all_plans: dict[str, Plan]) -> None:
    sources = [ROOT / "examples" / n.split("/", 1)[1] for n in all_plans if n.startswith("examples/")]
    sources += [CASES_DIR / n.split("/", 1)[1] for n in all_plans if n.startswith("conformance/")]
    assert sources
    for path in sources:
        first = compile_file(str(path))
        second = compile_file(str(path))
        assert dump_plan(first.plan) == dump_plan(second.plan), path


def test_a_copy_elsewhere_differs_only_in_paths(all_plans: dict[str, Plan], tmp_path: Path) -> None:
    """Only the file's own location reaches the plan: no clock, no randomness, no host state."""
    now = time.time()
    names = [n for n in all_plans if n.startswith(("examples/", "conformance/"))]
    assert names
    for name in names:
        plan = all_plans[name]
        original = Path(plan.source)
        copy_dir = tmp_path / name.replace("/", "_")
        # Files the plan read besides its source (sub-DAG files) are copied along.
        for dep in [original, *map(Path, plan.dependencies)]:
            target = copy_dir / dep.relative_to(original.parent)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(dep, target)
        result = compile_file(str(copy_dir / original.name))
        assert result.ok, name
        moved = dump_plan(result.plan)
        assert str(original.parent) not in moved, name
        assert moved.replace(str(copy_dir), "<DIR>") == dump_plan(plan).replace(str(original.parent), "<DIR>"), name
        assert list(clock_or_random_values(json.loads(moved), now, original.read_text(encoding="utf-8"))) == [], name


# --------------------------------------------------------------------------
# Versions and damaged files
# --------------------------------------------------------------------------


def some_plan_dict(all_plans: dict[str, Plan]) -> dict[str, Any]:
    return json.loads(dump_plan(next(iter(all_plans.values()))))


def test_a_newer_plan_version_is_refused_with_a_hint_to_recompile(all_plans: dict[str, Plan]) -> None:
    data = some_plan_dict(all_plans)
    data["plan_version"] = PLAN_VERSION + 1
    with pytest.raises(PlanError, match="recompile") as info:
        plan_from_dict(data)
    assert str(PLAN_VERSION + 1) in str(info.value)


@pytest.mark.parametrize("version", [0, "1", None])
def test_an_unreadable_plan_version_is_refused(all_plans: dict[str, Plan], version: Any) -> None:
    data = some_plan_dict(all_plans)
    data["plan_version"] = version
    with pytest.raises(PlanError):
        plan_from_dict(data)


def test_load_plan_reads_back_what_dump_plan_wrote(all_plans: dict[str, Plan], tmp_path: Path) -> None:
    plan = next(iter(all_plans.values()))
    path = tmp_path / "plan.json"
    path.write_text(dump_plan(plan), encoding="utf-8")
    assert load_plan(str(path)) == plan


@pytest.mark.parametrize("layout", ["as_written", "pretty_printed"])
def test_load_plan_names_the_file_and_line_of_a_truncated_plan(all_plans: dict[str, Plan], tmp_path: Path,
                                                               layout: str) -> None:
    text = dump_plan(next(iter(all_plans.values())))
    if layout == "pretty_printed":  # as `python -m json.tool` leaves it: the line number matters
        text = json.dumps(json.loads(text), indent=1)
    truncated = text[: len(text) // 2]
    path = tmp_path / "plan.json"
    path.write_text(truncated, encoding="utf-8")
    with pytest.raises(PlanError) as info:
        load_plan(str(path))
    line = truncated.count("\n") + 1
    assert layout == "as_written" or line > 1
    assert str(info.value).startswith(f"{path}:{line}:")
    assert "damaged plan file" in str(info.value)


def test_load_plan_names_the_file_of_a_plan_from_a_newer_dagu(all_plans: dict[str, Plan], tmp_path: Path) -> None:
    data = some_plan_dict(all_plans)
    data["plan_version"] = PLAN_VERSION + 1
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(PlanError, match="recompile") as info:
        load_plan(str(path))
    assert str(info.value).startswith(f"{path}: ")


def test_the_clock_check_finds_time_stamps_and_ids_not_in_the_source() -> None:
    now = time.time()
    today = time.strftime("%Y-%m-%d")
    data = {"a": [f"built {today}", int(now), "9b2f6c1e-4a0b-4d8e-9a51-0c7f1f0e3b2d"], "b": "2020-01-01", "c": 3}
    assert list(clock_or_random_values(data, now, source="b: 2020-01-01")) == [
        f"built {today}", int(now), "9b2f6c1e-4a0b-4d8e-9a51-0c7f1f0e3b2d"]
