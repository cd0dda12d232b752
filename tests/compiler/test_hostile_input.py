"""Hostile workflow files are refused with a located error, in bounded time and memory.

Each case once hung or exhausted `dagu validate` (and a scheduler watching the
folder): a YAML alias bomb grew past 2.5 GB, a FIFO blocked in open(), a
symlink to /dev/zero read until MemoryError, a NUL byte was reported at 1:1.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from dagu.compiler.pipeline import compile_file
from dagu.schedule.dag_files import DagFiles

DAGU = [sys.executable, "-m", "dagu"]
MEMORY_CAP = 1 << 30  # validate of any file must fit in 1 GiB of address space


def _capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*DAGU, "validate", str(path)], capture_output=True, text=True, timeout=60,
                          preexec_fn=_capped, cwd=path.parent)


def billion_laughs(levels: int = 9) -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    previous = "a"
    for name in "bcdefghijk"[: levels - 1]:
        lines.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
        previous = name
    return "\n".join(lines) + "\nsteps:\n  - id: x\n    command: echo hi\n"


def test_an_alias_bomb_is_refused_at_its_line_within_a_memory_cap(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(billion_laughs())
    res = validate(bomb)
    assert res.returncode == 1, res.stderr[-500:]
    assert "[yaml-too-large]" in res.stdout and f"{bomb.name}:" in res.stdout
    assert "Traceback" not in res.stdout + res.stderr


def test_a_small_alias_use_still_compiles(tmp_path: Path) -> None:
    ok = tmp_path / "ok.yaml"
    ok.write_text("env: &e {A: '1'}\nsteps:\n  - id: s\n    env: *e\n    command: echo $A\n")
    result = compile_file(str(ok))
    assert result.ok, result.diagnostics


def test_deep_nesting_is_refused_not_a_recursion_error(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("steps:\n  - id: a\n    command: echo\nx: " + "[" * 300 + "]" * 300 + "\n")
    res = validate(deep)
    assert res.returncode == 1
    assert "[yaml-too-large]" in res.stdout and f"{deep.name}:4:" in res.stdout


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "x.yaml"
    os.mkfifo(fifo)
    res = validate(fifo)
    assert res.returncode == 1
    assert "FIFO" in res.stdout and "[unreadable-file]" in res.stdout


def test_a_symlink_to_dev_zero_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "zero.yaml"
    link.symlink_to("/dev/zero")
    res = validate(link)
    assert res.returncode == 1
    assert "character device" in res.stdout


def test_a_file_over_the_size_cap_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with open(big, "w") as fh:
        fh.write("steps:\n  - id: a\n    command: echo\n")
        fh.write("#" + "x" * (17 * 1024 * 1024) + "\n")
    res = validate(big)
    assert res.returncode == 1
    assert "byte limit" in res.stdout


def test_a_raw_nul_byte_is_reported_at_its_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "nul.yaml"
    path.write_bytes(b"steps:\n  - id: a\n    command: echo a\x00b\n")
    res = validate(path)
    assert res.returncode == 1
    assert f"{path.name}:3:20:" in res.stdout and "NUL" in res.stdout


@pytest.mark.parametrize("body, line", [
    ('steps:\n  - id: a\n    command: "echo \\0 x"\n', 3),
    ('env:\n  - A: "x\\0y"\nsteps:\n  - id: a\n    command: echo\n', 2),
])
def test_a_nul_escape_in_a_value_is_a_located_error(tmp_path: Path, body: str, line: int) -> None:
    path = tmp_path / "nulesc.yaml"
    path.write_text(body)
    result = compile_file(str(path))
    assert not result.ok
    found = [d for d in result.diagnostics if d.code == "nul-byte"]
    assert found and found[0].line == line


def test_the_scheduler_folder_scan_survives_a_fifo_and_loads_the_other_dags(tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "good.yaml").write_text("schedule: '* * * * *'\nsteps:\n  - id: a\n    command: echo\n")
    os.mkfifo(dags / "trap.yaml")
    (dags / "bomb.yaml").write_text(billion_laughs())
    logged: list[str] = []

    def compile_for_scheduler(path: str):
        from dagu.compiler.render import render

        result = compile_file(path)
        return (result.plan, None) if result.ok else (None, render("text", result.diagnostics, 1))

    files = DagFiles(str(dags), str(tmp_path / "plans"), compile_for_scheduler, logged.append)
    files.scan()
    assert list(files.dags()) == ["good"]
    assert "FIFO" in (files.files[str(dags / "trap.yaml")].error or "")
    assert "yaml-too-large" in (files.files[str(dags / "bomb.yaml")].error or "")
