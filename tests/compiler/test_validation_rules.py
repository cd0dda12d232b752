"""Compile-time rules of upstream specs 002, 018 and 023 (issue 15): each a located error, not a run
that starts and then fails, plus `schedule: ""`, which upstream reads as no schedule.

- spec 018 (Parallel, Field Shape and Errors): a static item is a scalar or a flat mapping of
  strings, numbers and booleans; a nested list or mapping is refused.
- spec 023 (Field Shape, Condition Text, Expected Value, Errors): preconditions are a string or a
  list, and no condition, expected value, string shortcut or `re:` pattern is empty.
- upstream's step builder: repeat: while/until needs a condition or an exit_code.
- upstream's DAG builder: a router step needs a graph.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dagu.compiler.pipeline import CompileResult, compile_file


def compiled(tmp_path: Path, text: str) -> CompileResult:
    path = tmp_path / "flow.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return compile_file(str(path))


def errors(result: CompileResult) -> list[str]:
    return [f"{d.line}:{d.col} {d.code}" for d in result.diagnostics if d.is_error]


PARALLEL = """\
    steps:
      - id: fan
        call: child
        parallel:
          items:
            - plain
            - {ITEM}
    ---
    name: child
    steps: [echo c]
    """


@pytest.mark.parametrize("item, error", [
    ("{region: eu, count: 2, dry: true}", None),
    ("[a, b]", "7:11 wrong-type"),
    ("{region: {name: eu}}", "7:20 invalid-parallel-item"),
    ("{regions: [eu, us]}", "7:21 invalid-parallel-item"),
    ("{region: }", "7:20 invalid-parallel-item"),
])
def test_parallel_items_are_scalars_or_flat_mappings(tmp_path: Path, item: str, error: str | None) -> None:
    result = compiled(tmp_path, PARALLEL.replace("{ITEM}", item))
    assert errors(result) == ([error] if error else [])


@pytest.mark.parametrize("entry, error", [
    ('- ""', "3:7 empty-condition"),
    ('- "   "', "3:7 empty-condition"),
    ('- condition: ""', "3:18 empty-condition"),
    ('- {condition: x, expected: ""}', "3:32 empty-condition"),
    ('- {condition: x, expected: " "}', "3:32 empty-condition"),
    ('- {condition: x, expected: "re:"}', "3:32 empty-condition"),
    ('- {condition: x, expected: "re: "}', "3:32 empty-condition"),
    ('- {condition: x, expected: "re:^x$"}', None),
    ('- test -f flag', None),
])
def test_no_part_of_a_precondition_is_empty(tmp_path: Path, entry: str, error: str | None) -> None:
    result = compiled(tmp_path, f"steps:\n  - command: echo\n    preconditions:\n      {entry}\n".replace(
        "    preconditions:\n      ", "    preconditions:\n    "))
    assert errors(result) == ([error.replace("3:", "4:", 1)] if error else [])


def test_an_empty_string_precondition_is_refused_at_dag_level(tmp_path: Path) -> None:
    assert errors(compiled(tmp_path, 'preconditions: ""\nsteps: [echo a]\n')) == ["1:16 empty-condition"]


@pytest.mark.parametrize("where", ["dag", "step"])
def test_preconditions_as_a_mapping_are_refused(tmp_path: Path, where: str) -> None:
    if where == "dag":
        text = "preconditions:\n  condition: test -f x\nsteps: [echo a]\n"
        expected = "2:3 wrong-type"
    else:
        text = "steps:\n  - command: echo\n    preconditions: {condition: test -f x}\n"
        expected = "3:20 wrong-type"
    result = compiled(tmp_path, text)
    assert errors(result) == [expected]
    assert "must be a string or a list, got a mapping" in result.diagnostics[0].message


@pytest.mark.parametrize("policy, error", [
    ("{repeat: while}", "3:29 repeat-without-condition"),
    ("{repeat: until, limit: 3}", "3:29 repeat-without-condition"),
    ("{repeat: while, exit_code: [1]}", None),
    ("{repeat: until, condition: x, expected: y}", None),
    ("{repeat: true, limit: 2}", None),
])
def test_repeat_while_or_until_needs_a_condition(tmp_path: Path, policy: str, error: str | None) -> None:
    result = compiled(tmp_path, f"steps:\n  - command: echo\n    repeat_policy: {policy}\n")
    assert errors(result) == ([error] if error else [])


ROUTER = """\
    {TYPE}steps:
      - id: route
        type: router
        value: x
        routes: {x: [done]}
      - id: done
        command: echo
    """


@pytest.mark.parametrize("dag_type, error", [
    ("type: chain\n", "4:5 chain-router"),
    ("", "3:5 chain-router"),  # no type and no depends: a chain
    ("type: graph\n", None),
])
def test_a_router_needs_a_graph(tmp_path: Path, dag_type: str, error: str | None) -> None:
    result = compiled(tmp_path, textwrap.dedent(ROUTER).replace("{TYPE}", dag_type))
    assert errors(result) == ([error] if error else [])


def test_an_empty_schedule_is_no_schedule(tmp_path: Path) -> None:
    result = compiled(tmp_path, 'schedule: ""\nsteps: [echo a]\n')
    assert result.ok and not result.diagnostics
    schedule = result.plan.dags[result.plan.root].schedule
    assert schedule.start == schedule.stop == schedule.restart == ()
    assert errors(compiled(tmp_path, 'schedule: "61 * * * *"\nsteps: [echo a]\n')) == ["1:11 invalid-cron"]
