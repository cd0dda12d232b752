"""Custom step types (step_types:) expand to built-in steps at compile time, input checked."""

from __future__ import annotations

import textwrap
from pathlib import Path

from dagu.compiler.pipeline import compile_file

DEFINITION = """
step_types:
  notify:
    type: command
    description: Post a message
    input_schema:
      type: object
      required: [channel]
      additionalProperties: false
      properties:
        channel: {type: string}
        text: {type: string, default: hello}
        tags: {type: array, items: {type: string}}
    template:
      command: echo "[{{ .input.channel }}] {{ .input.text }}"
      env:
        - TAGS: "{{ .input.tags }}"
      output: {$input: channel}
"""


def _compile(tmp_path: Path, steps: str):
    path = tmp_path / "custom.yaml"
    path.write_text(textwrap.dedent(DEFINITION) + textwrap.dedent(steps))
    return compile_file(str(path))


def test_a_custom_step_becomes_the_built_in_step_its_template_describes(tmp_path: Path) -> None:
    result = _compile(tmp_path, """
        steps:
          - id: tell
            type: notify
            with:
              channel: ops
              tags: [a, b]
            retry_policy:
              limit: 1
        """)
    assert result.ok, [str(d) for d in result.diagnostics]
    step = result.plan.main.steps[0]
    assert step.type == "command"
    assert step.command == (['echo "[ops] hello"'],)  # the default of `text` filled in
    assert [(e.name, e.value) for e in step.env] == [("TAGS", ['["a","b"]'])]
    assert step.output == "ops"
    assert step.description == "Post a message"
    assert step.retry_policy is not None and step.retry_policy.limit == 1  # the step's own keys stay
    assert "with" not in step.options and step.options == {}


def test_bad_input_is_reported_at_the_steps_own_keys(tmp_path: Path) -> None:
    result = _compile(tmp_path, """
        steps:
          - id: bad
            type: notify
            with:
              chanel: ops
              text: 5
        """)
    problems = sorted((d.line, d.code, d.message) for d in result.diagnostics)
    assert not result.ok
    assert all(code == "custom-type-input" for _l, code, _m in problems)
    lines = {line for line, _c, _m in problems}
    source = (tmp_path / "custom.yaml").read_text().splitlines()
    assert any("chanel" in source[line - 1] for line in lines)
    assert any("text: 5" in source[line - 1] for line in lines)
    assert any("'channel' is a required property" in m for _l, _c, m in problems)


def test_unsupported_template_expressions_are_refused_at_the_definition(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(textwrap.dedent("""
        step_types:
          stamp:
            type: command
            input_schema: {type: object}
            template:
              command: echo "{{ now }}"
        steps:
          - id: s
            type: stamp
        """))
    result = compile_file(str(path))
    codes = [(d.code, d.line) for d in result.diagnostics]
    assert codes == [("custom-type-template", 7)]
