"""`dagu compile` warns about host variables a step would not see under the runtime's sandbox."""

from __future__ import annotations

import textwrap
from pathlib import Path

from dagu.compiler.pipeline import compile_file
from dagu.compiler.references import SANDBOX_ENV
from dagu.process.sandbox import ALLOWED_ENV


def _undefined(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "env.yaml"
    path.write_text(textwrap.dedent(text))
    result = compile_file(str(path))
    return sorted(d.message.split("'")[1] for d in result.diagnostics if d.code == "undefined-variable")


def test_compiler_and_runtime_agree_on_the_allow_list() -> None:
    assert SANDBOX_ENV == ALLOWED_ENV


def test_host_variables_need_a_passthrough(tmp_path: Path) -> None:
    text = """
        steps:
          - id: a
            command: echo "$HOME $LC_TIME $CI $AWS_PROFILE $DEPLOY_TOKEN"
        """
    assert _undefined(tmp_path, text) == ["AWS_PROFILE", "CI", "DEPLOY_TOKEN"]
    assert _undefined(tmp_path, "sandbox:\n  env_passthrough: [CI, AWS_*]\n" + textwrap.dedent(text)) == \
        ["DEPLOY_TOKEN"]
    assert _undefined(tmp_path, "sandbox:\n  inherit_env: true\n" + textwrap.dedent(text)) == []


def test_a_step_level_passthrough_covers_only_that_step(tmp_path: Path) -> None:
    assert _undefined(tmp_path, """
        type: graph
        steps:
          - id: a
            sandbox:
              env_passthrough: [DEPLOY_TOKEN]
            command: echo "$DEPLOY_TOKEN"
          - id: b
            command: echo "$DEPLOY_TOKEN"
        """) == ["DEPLOY_TOKEN"]
