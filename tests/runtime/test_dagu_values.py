"""Step values as upstream Dagu gives them (specs 011, 012; issue 15), end to end."""

from __future__ import annotations

from tests.runtime.conftest import Env


def test_captured_output_is_trimmed_at_both_ends_only(env: Env) -> None:
    env.write("trim.yaml", """
        steps:
          - id: produce
            command: printf '  \\n  a  b \\n c\\t \\n\\n'
            output: VALUE
          - id: use
            command: printf '[%s]' "${VALUE}" > value.txt
        """)
    res = env.run("start", "trim.yaml")
    assert res.returncode == 0, res.stderr
    assert (env.dir / "value.txt").read_text() == "[a  b \n c]"


def test_exit_code_of_a_failed_continued_step_in_both_spellings(env: Env) -> None:
    env.write("codes.yaml", """
        steps:
          - id: flaky
            command: exit 7
            continue_on:
              failure: true
          - id: report
            command: echo "${flaky.exit_code} ${flaky.exitCode}" > codes.txt
        """)
    env.run("start", "codes.yaml")
    assert (env.dir / "codes.txt").read_text() == "7 7\n"


def test_command_substitution_in_an_env_value_stays_literal(env: Env) -> None:
    env.write("literal.yaml", """
        env:
          - LITERAL: "$(echo ran)"
        steps:
          - id: show
            env:
              - ALSO: "pre $(echo ran) post"
            command: printf '%s|%s' "$LITERAL" "$ALSO" > env.txt
        """)
    res = env.run("start", "literal.yaml")
    assert res.returncode == 0, res.stderr
    assert (env.dir / "env.txt").read_text() == "$(echo ran)|pre $(echo ran) post"
