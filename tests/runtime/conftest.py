"""Shared fixtures of the runtime tests: a work directory and a DAGU_HOME per test, and a way to
run `dagu` there as a user would (`python -m dagu`, real processes, real exit codes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

DAGU = [sys.executable, "-m", "dagu"]


class Env:
    def __init__(self, tmp: Path) -> None:
        self.dir = tmp / "work"
        self.home = tmp / "home"
        self.dir.mkdir()
        self.home.mkdir()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGU_", "DAG_"))}
        self.env["DAGU_HOME"] = str(self.home)

    def write(self, name: str, text: str) -> Path:
        path = self.dir / name
        path.write_text(textwrap.dedent(text))
        return path

    def run(self, *args: str, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([*DAGU, *args], cwd=self.dir, env={**self.env, **(env or {})}, capture_output=True,
                              text=True, timeout=timeout)

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([*DAGU, *args], cwd=self.dir, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def status(self, dag: str, run_id: str | None = None) -> dict:
        args = ["status", dag, "--format", "json"] + (["--run-id", run_id] if run_id else [])
        res = self.run(*args)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)

    def wait_for(self, name: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not (self.dir / name).exists():
            assert time.monotonic() < deadline, f"{name} never appeared"
            time.sleep(0.02)


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


