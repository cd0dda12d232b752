"""Step identity (upstream spec 009, "Step Identity" and "Dependencies"; issue 15).

What must hold: `depends` names a step by id or by name and the plan stores
ids; names and ids are trimmed, then matched exactly and case-sensitively;
non-string depends entries are read as text and null depends as none; a
written id is `^[A-Za-z][A-Za-z0-9_]*$` of at most 40 bytes and not a reserved
word in any case; a name is at most 255 UTF-8 bytes; names and ids are unique
and no id is another step's name; `steps: []` is refused.  Each refusal is a
located diagnostic with its code.
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


def depends(result: CompileResult) -> dict[str, tuple[str, ...]]:
    assert result.ok, [d.message for d in result.diagnostics]
    return {s.id: s.depends for s in result.plan.dags[result.plan.root].steps}


def test_depends_names_a_step_by_its_trimmed_name_and_the_plan_holds_the_id(tmp_path: Path) -> None:
    result = compiled(tmp_path, """\
        type: graph
        steps:
          - id: build
            name: "  Build image "
            command: ./build.sh
          - id: deploy
            name: Deploy image
            depends: Build image
            command: ./deploy.sh
          - id: notify
            depends: [deploy]
            command: ./notify.sh
        """)
    assert depends(result) == {"build": (), "deploy": ("build",), "notify": ("deploy",)}
    assert [s.name for s in result.plan.dags[result.plan.root].steps] == ["Build image", "Deploy image", "notify"]


def test_a_trimmed_id_is_the_step_id(tmp_path: Path) -> None:
    result = compiled(tmp_path, "type: graph\nsteps:\n  - id: ' build '\n    command: echo\n"
                                "  - id: test\n    depends: build\n    command: echo\n")
    assert depends(result) == {"build": (), "test": ("build",)}


@pytest.mark.parametrize("entry", ["build image", "' Build image'", "BUILD"])
def test_depends_entries_match_exactly_and_case_sensitively(tmp_path: Path, entry: str) -> None:
    result = compiled(tmp_path, f"""\
        type: graph
        steps:
          - id: build
            name: Build image
            command: echo
          - id: test
            depends: {entry}
            command: echo
        """)
    assert errors(result) == ["7:14 unknown-depends"]


def test_a_number_in_depends_is_read_as_text_and_null_depends_as_none(tmp_path: Path) -> None:
    result = compiled(tmp_path, """\
        type: graph
        steps:
          - name: "42"
            command: echo a
          - id: b
            depends: [42]
            command: echo b
          - id: c
            depends:
            command: echo c
        """)
    assert depends(result) == {"cmd_1": (), "b": ("cmd_1",), "c": ()}


@pytest.mark.parametrize("sid, code", [
    ("build-image", "invalid-step-id"),
    ("_build", "invalid-step-id"),
    ("a" * 41, "invalid-step-id"),
    ("env", "reserved-step-id"),
    ("Output", "reserved-step-id"),
    ("STDERR", "reserved-step-id"),
    ("outputs", "reserved-step-id"),
])
def test_bad_ids_are_refused_at_the_id(tmp_path: Path, sid: str, code: str) -> None:
    result = compiled(tmp_path, f"steps:\n  - id: {sid}\n    command: echo\n")
    assert errors(result) == [f"2:9 {code}"]


@pytest.mark.parametrize("sid", ["a" * 40, "b_1", "Z9", "environment", "param"])
def test_good_ids_are_accepted(tmp_path: Path, sid: str) -> None:
    assert compiled(tmp_path, f"steps:\n  - id: {sid}\n    command: echo\n").ok


def test_a_name_is_at_most_255_bytes_of_utf8(tmp_path: Path) -> None:
    fits = "é" * 127 + "a"  # 255 bytes
    assert compiled(tmp_path, f"steps:\n  - name: {fits}\n    command: echo\n").ok
    result = compiled(tmp_path, f"steps:\n  - name: {'é' * 128}\n    command: echo\n")  # 128 chars, 256 bytes
    assert errors(result) == ["2:11 step-name-too-long"]
    assert "256 bytes" in result.diagnostics[0].message


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    result = compiled(tmp_path, """\
        steps:
          - id: a
            name: Build
            command: echo a
          - id: b
            name: " Build"
            command: echo b
        """)
    assert errors(result) == ["6:11 duplicate-step-name"]


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    result = compiled(tmp_path, "steps:\n  - id: a\n    command: echo\n  - id: a\n    command: echo\n")
    assert errors(result) == ["4:9 duplicate-step-id"]


def test_an_id_equal_to_another_steps_name_is_refused(tmp_path: Path) -> None:
    result = compiled(tmp_path, """\
        steps:
          - id: build
            name: Build image
            command: ./build.sh
          - name: build
            command: ./other.sh
          - id: ship
            name: Ship
            command: echo
          - id: Ship
            name: last
            command: echo
        """)
    assert errors(result) == ["5:11 step-id-is-a-name", "10:9 step-id-is-a-name"]


def test_one_step_may_use_the_same_text_for_name_and_id(tmp_path: Path) -> None:
    result = compiled(tmp_path, "type: graph\nsteps:\n  - id: build\n    name: build\n    command: echo\n"
                                "  - id: test\n    depends: build\n    command: echo\n")
    assert depends(result) == {"build": (), "test": ("build",)}


@pytest.mark.parametrize("steps", ["[]", "{}"])
def test_a_dag_without_steps_is_refused(tmp_path: Path, steps: str) -> None:
    assert errors(compiled(tmp_path, f"steps: {steps}\n")) == ["1:8 no-steps"]
    assert errors(compiled(tmp_path, f"steps: [echo a]\n---\nname: child\nsteps: {steps}\n")) == ["4:8 no-steps"]
