"""base.yaml: defaults merged under every DAG of its directory, each problem at the file it is in."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dagu.cli import main
from dagu.compiler.pipeline import compile_file

GREET = """
step_types:
  greet:
    type: command
    input_schema:
      type: object
      required: [message]
      additionalProperties: false
      properties:
        message: {type: string}
    template:
      command: echo {{ .input.message }}
"""


@pytest.fixture(autouse=True)
def no_base_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGU_BASE_CONFIG", raising=False)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def line_of(path: Path, needle: str) -> int:
    """1-based line of the first line of `path` holding `needle`."""
    return next(i for i, text in enumerate(path.read_text().splitlines(), 1) if needle in text)


def problems(result) -> list[tuple[str, int, str]]:
    return [(Path(d.file).name, d.line, d.code) for d in result.diagnostics]


def test_a_dag_without_those_keys_gets_the_base_values(tmp_path: Path) -> None:
    base = write(tmp_path / "base.yaml", """
        hist_retention_days: 7
        timeout_sec: 600
        max_active_runs: 3
        skip_if_successful: true
        env:
          - LOG_LEVEL: info
        """)
    dag = write(tmp_path / "etl.yaml", """
        steps:
          - id: a
            command: echo $LOG_LEVEL
        """)
    result = compile_file(str(dag))
    assert result.ok, [str(d) for d in result.diagnostics]
    main_dag = result.plan.main
    assert (main_dag.hist_retention_days, main_dag.timeout_sec, main_dag.max_active_runs) == (7, 600, 3)
    assert main_dag.skip_if_successful is True
    assert [(e.name, e.value) for e in main_dag.env] == [("LOG_LEVEL", ["info"])]
    assert result.plan.dependencies == {str(base): __import__("hashlib").sha256(base.read_bytes()).hexdigest()}


def test_the_dags_own_values_win_even_an_explicit_false(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", """
        hist_retention_days: 7
        skip_if_successful: true
        timeout_sec: 600
        """)
    dag = write(tmp_path / "etl.yaml", """
        hist_retention_days: 90
        skip_if_successful: false
        steps: [echo hi]
        """)
    main_dag = compile_file(str(dag)).plan.main
    assert (main_dag.hist_retention_days, main_dag.skip_if_successful, main_dag.timeout_sec) == (90, False, 600)


def test_env_is_appended_mappings_merge_by_key_handlers_by_event(tmp_path: Path) -> None:
    base = write(tmp_path / "base.yaml", """
        env:
          - SHARED: base
          - LEVEL: info
        smtp:
          host: smtp.example.com
          port: 587
        mail_on:
          failure: true
          success: true
        handler_on:
          failure:
            command: echo base-failure
          exit:
            command: echo base-exit
        """)
    dag = write(tmp_path / "etl.yaml", """
        env:
          LEVEL: debug
          DERIVED: ${SHARED}/x
        smtp:
          port: 25
        mail_on:
          failure: false
        handler_on:
          failure:
            command: echo own-failure
        steps: [echo hi]
        """)
    result = compile_file(str(dag))
    assert result.ok, [str(d) for d in result.diagnostics]
    d = result.plan.main
    # base entries first, then the DAG's: the later LEVEL wins at run time, DERIVED may use SHARED
    assert [(e.name, e.value) for e in d.env] == [
        ("SHARED", ["base"]), ("LEVEL", ["info"]), ("LEVEL", ["debug"]), ("DERIVED", [{"var": "SHARED", "path": []}, "/x"])]
    assert d.settings["smtp"] == {"port": 25, "host": "smtp.example.com"}
    assert d.settings["mail_on"] == {"failure": False}  # replaced whole, as upstream
    assert d.handlers["failure"].command == (["echo own-failure"],)
    assert d.handlers["exit"].command == (["echo base-exit"],)
    # where each handler was written: `dagu status` can say a value came from base.yaml
    assert (d.source_map["handler_on.exit"].file, d.source_map["handler_on.exit"].line) == (
        str(base), line_of(base, "exit:"))
    assert d.source_map["handler_on.failure"].file == str(dag)


def test_sub_dags_do_not_get_the_base_handlers(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", """
        handler_on:
          failure:
            command: echo alert
        """)
    write(tmp_path / "child.yaml", "steps: [echo child]\n")
    dag = write(tmp_path / "parent.yaml", """
        steps:
          - call: child
          - call: local
        ---
        name: local
        steps: [echo local]
        """)
    result = compile_file(str(dag))
    assert result.ok, [str(d) for d in result.diagnostics]
    assert set(result.plan.dags) == {"parent", "child", "local"}
    assert list(result.plan.dags["parent"].handlers) == ["failure"]
    assert result.plan.dags["child"].handlers == {} and result.plan.dags["local"].handlers == {}


def test_a_base_step_type_with_bad_input_is_reported_at_the_step(tmp_path: Path) -> None:
    base = write(tmp_path / "base.yaml", GREET)
    dag = write(tmp_path / "hello.yaml", """
        steps:
          - id: ok
            type: greet
            with:
              message: hello
          - id: bad
            type: greet
            with:
              mesage: hello
        """)
    result = compile_file(str(dag))
    assert not result.ok
    bad_line = line_of(dag, "mesage")
    assert {(f, line, code) for f, line, code in problems(result)} == {("hello.yaml", bad_line, "custom-type-input")}
    notes = [n for d in result.diagnostics for n in d.notes]
    assert any(f"{base.name}:{line_of(base, 'input_schema')}" in n for n in notes), notes

    write(dag, """
        steps:
          - id: ok
            type: greet
            with:
              message: hello
        """)
    result = compile_file(str(dag))
    assert result.ok, [str(d) for d in result.diagnostics]
    assert result.plan.main.steps[0].type == "command"
    assert result.plan.main.steps[0].command == (["echo hello"],)


def test_a_step_type_defined_in_both_is_an_error_at_the_dags_definition(tmp_path: Path) -> None:
    base = write(tmp_path / "base.yaml", GREET)
    dag = write(tmp_path / "hello.yaml", GREET + "steps:\n  - type: greet\n    with: {message: hi}\n")
    result = compile_file(str(dag))
    [diag] = result.diagnostics
    assert (Path(diag.file).name, diag.line, diag.col, diag.code) == ("hello.yaml", line_of(dag, "greet:"), 3,
                                                                       "duplicate-step-type")
    assert f"{base.name}:{line_of(base, 'greet:')}:3" in diag.message


@pytest.mark.parametrize("base_text, needle, code", [
    ("timezone: Mars/Olympus\n", "Mars", "invalid-timezone"),
    ("env:\n  - LOG: info\n  - 9BAD: x\n", "9BAD", "invalid-format"),
    ("timeout_sec: soon\n", "soon", "invalid-duration"),
    ("hist_retention_dayz: 3\n", "dayz", "unknown-key"),
    ("steps:\n  - echo shared\n", "steps", "base-config-key"),
    ("name: everyone\n", "name", "base-config-key"),
    ("handlerOn:\n  failure:\n    command: echo x\n", "handlerOn", "camel-case-key"),
    ("env: [A=1\n", None, "yaml-syntax"),
    ("- a\n- b\n", "- a", "base-config-shape"),
])
def test_a_problem_in_base_yaml_is_reported_at_base_yaml(tmp_path: Path, base_text: str, needle: str | None,
                                                         code: str) -> None:
    base = tmp_path / "base.yaml"
    base.write_text(base_text)
    dag = write(tmp_path / "etl.yaml", """
        env:
          - OWN: 1
        steps: [echo hi]
        ---
        name: second
        steps: [echo hi]
        """)
    result = compile_file(str(dag))
    assert not result.ok
    found = [(f, line, c) for f, line, c in problems(result) if c == code]
    assert len(found) == 1, problems(result)  # once, though two documents are merged over it
    assert found[0][0] == "base.yaml"
    if needle is not None:
        assert found[0][1] == line_of(base, needle)
    assert all(f == "base.yaml" for f, _line, _code in problems(result)), problems(result)


def test_the_dags_own_env_entries_keep_their_lines_after_the_base_ones(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", "env:\n  - A: 1\n  - B: 2\n  - C: 3\n")
    dag = write(tmp_path / "etl.yaml", """
        env:
          - GOOD: 1
          - 9BAD: 2
        steps: [echo hi]
        """)
    result = compile_file(str(dag))
    assert problems(result) == [("etl.yaml", line_of(dag, "9BAD"), "invalid-format")]


def test_a_value_overridden_by_the_dag_is_not_checked_again(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", "timezone: Mars/Olympus\n")
    dag = write(tmp_path / "etl.yaml", "timezone: UTC\nsteps: [echo hi]\n")
    assert compile_file(str(dag)).ok


def test_dagu_base_config_names_another_file_or_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "dags" / "base.yaml", "hist_retention_days: 7\n")
    shared = write(tmp_path / "shared" / "prod.yaml", "hist_retention_days: 99\n")
    dag = write(tmp_path / "dags" / "etl.yaml", "steps: [echo hi]\n")
    assert compile_file(str(dag)).plan.main.hist_retention_days == 7

    monkeypatch.setenv("DAGU_BASE_CONFIG", str(shared))
    result = compile_file(str(dag))
    assert result.plan.main.hist_retention_days == 99
    assert list(result.plan.dependencies) == [str(shared)]

    monkeypatch.setenv("DAGU_BASE_CONFIG", "")
    result = compile_file(str(dag))
    assert result.plan.main.hist_retention_days not in (7, 99) and result.plan.dependencies == {}

    monkeypatch.setenv("DAGU_BASE_CONFIG", str(tmp_path / "missing.yaml"))
    result = compile_file(str(dag))
    assert [(Path(d.file).name, d.code) for d in result.diagnostics] == [("missing.yaml", "base-config-missing")]
    assert result.diagnostics[0].notes


def test_base_yml_is_found_too(tmp_path: Path) -> None:
    write(tmp_path / "base.yml", "hist_retention_days: 3\n")
    dag = write(tmp_path / "etl.yml", "steps: [echo hi]\n")
    assert compile_file(str(dag)).plan.main.hist_retention_days == 3


def test_base_yaml_is_not_compiled_as_a_dag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture) -> None:
    base = write(tmp_path / "base.yaml", "env: [A=1]\n")
    write(tmp_path / "etl.yaml", "steps: [echo $A]\n")
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "."]) == 0
    assert capsys.readouterr().out == "Success: no issues found in 1 file\n"  # etl.yaml alone
    assert main(["validate", "base.yaml"]) == 1
    out = capsys.readouterr().out
    assert "base.yaml:1:1: error: base.yaml is the base config of its directory, not a workflow" in out
    assert "[base-config-not-a-dag]" in out
    assert compile_file(str(base)).diagnostics[0].code == "base-config-not-a-dag"
