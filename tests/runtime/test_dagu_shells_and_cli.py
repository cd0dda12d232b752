"""Shell errexit and the start command line as upstream Dagu has them (spec 014; issue 15)."""

from __future__ import annotations

import shutil

import pytest

from tests.runtime.conftest import Env


def _trace(env: Env) -> list[str]:
    path = env.dir / "trace.txt"
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_only_a_shell_the_step_does_not_name_gets_errexit(env: Env) -> None:
    env.write("errexit.yaml", """
        steps:
          - id: default_shell
            command: |
              false
              echo default >> trace.txt
            continue_on:
              failure: true
          - id: named_bash
            shell: bash
            command: |
              false
              echo named >> trace.txt
        """)
    res = env.run("start", "errexit.yaml", "--run-id", "e1")
    assert _trace(env) == ["named"]
    st = env.status("errexit", "e1")
    assert st["steps"]["default_shell"]["status"] == "failed"
    assert st["steps"]["named_bash"]["status"] == "succeeded"
    assert res.returncode == 0, res.stderr


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_a_dag_level_shell_keeps_errexit(env: Env) -> None:
    env.write("dagshell.yaml", """
        shell: bash
        steps:
          - id: first
            command: |
              false
              echo after >> trace.txt
        """)
    res = env.run("start", "dagshell.yaml")
    assert res.returncode == 1
    assert _trace(env) == []


def test_start_refuses_params_given_without_a_double_dash(env: Env) -> None:
    env.write("words.yaml", """
        params:
          - A: none
        steps:
          - id: show
            command: echo "${A}" >> trace.txt
        """)
    res = env.run("start", "words.yaml", "A=1", "extra")
    assert res.returncode == 2
    assert res.stderr.startswith("usage: dagu start ") and "Traceback" not in res.stderr
    assert _trace(env) == []
    res = env.run("start", "words.yaml", "--", "A=1")
    assert res.returncode == 0, res.stderr
    assert _trace(env) == ["1"]
