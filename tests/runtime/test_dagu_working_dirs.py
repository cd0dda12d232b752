"""Working directories as upstream Dagu sets them (specs 014, 019; issue 15), end to end."""

from __future__ import annotations

from tests.runtime.conftest import Env


def test_a_relative_step_working_dir_is_under_the_dags_and_is_created(env: Env) -> None:
    (env.dir / "base").mkdir()
    env.write("wd.yaml", """
        working_dir: base
        steps:
          - id: nested
            working_dir: made/here
            command: pwd > here.txt
        """)
    res = env.run("start", "wd.yaml")
    assert res.returncode == 0, res.stderr
    assert (env.dir / "base" / "made" / "here" / "here.txt").read_text() == f"{env.dir}/base/made/here\n"


def test_a_relative_dag_working_dir_is_under_the_dag_files_folder(env: Env) -> None:
    (env.dir / "flows" / "out").mkdir(parents=True)
    env.write("flows/rel.yaml", """
        working_dir: out
        steps:
          - id: where
            command: pwd > where.txt
        """)
    res = env.run("start", "flows/rel.yaml")
    assert res.returncode == 0, res.stderr
    assert (env.dir / "flows" / "out" / "where.txt").read_text() == f"{env.dir}/flows/out\n"


def test_a_sub_dag_without_a_working_dir_runs_in_its_callers(env: Env) -> None:
    (env.dir / "callerdir").mkdir()
    (env.dir / "ownwd").mkdir()
    env.write("parent.yaml", """
        steps:
          - id: call_plain
            working_dir: callerdir
            call: plain
          - id: call_own
            working_dir: callerdir
            call: own
        ---
        name: plain
        steps:
          - id: where
            command: pwd > plain.txt
        ---
        name: own
        working_dir: ownwd
        steps:
          - id: where
            command: pwd > own.txt
        """)
    res = env.run("start", "parent.yaml")
    assert res.returncode == 0, res.stderr
    assert (env.dir / "callerdir" / "plain.txt").read_text() == f"{env.dir}/callerdir\n"
    assert (env.dir / "ownwd" / "own.txt").read_text() == f"{env.dir}/ownwd\n"


def test_a_relative_script_path_runs_from_the_steps_working_directory(env: Env) -> None:
    tools = env.dir / "tools"
    tools.mkdir()
    script = tools / "script.sh"
    script.write_text("#!/bin/sh\npwd > ran.txt\n")
    script.chmod(0o755)
    env.write("script.yaml", """
        steps:
          - id: run_it
            working_dir: tools
            command: ./script.sh
        """)
    res = env.run("start", "script.yaml")
    assert res.returncode == 0, res.stderr
    assert (tools / "ran.txt").read_text() == f"{tools}\n"
