"""Fixtures of the web tests: a DAGs folder and a data dir written by real `dagu start` runs, the
Flask app over them (`create_app`) and its test client.

The data dir is made once per module (real runs take a second or two each); tests that change
it (start, stop, approve) use their own DAG or run ids, so the order of tests does not matter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

DAGU = [sys.executable, "-m", "dagu"]

HELLO = """\
    description: says hello twice
    tags: [demo, nightly]
    schedule: "0 3 * * *"
    params:
      - name: WHO
        type: string
        default: world
        enum: [world, moon]
    steps:
      - id: greet
        command: sh -c 'echo hello ${WHO}; seq 1 2000'
        output: GREETING
      - id: after
        depends: greet
        command: echo done
    """

GATED = """\
    steps:
      - id: build
        command: echo built
      - id: gate
        depends: build
        command: echo gate
        approval:
          prompt: Ship it?
          input: [TICKET]
          required: [TICKET]
      - id: ship
        depends: gate
        command: echo "ship ${TICKET}"
    """

SLOW = """\
    steps:
      - id: wait
        command: sh -c 'for i in $(seq 600); do [ -f {go} ] && break; sleep 0.1; done'
    """

FLAKY = """\
    steps:
      - id: first
        command: echo one
      - id: check
        depends: first
        command: sh -c 'test -f {ok}'
    """

BROKEN = """\
    steps:
      - id: a
        comand: echo hi
    """


@dataclass
class Data:
    """A DAGs folder, a data dir, and a way to run `dagu` against them as a user would."""

    root: Path
    home: Path
    dags: Path
    env: dict[str, str]

    def dagu(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([*DAGU, *args], cwd=self.root, env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def start(self, dag: str, run_id: str, *params: str) -> None:
        res = self.dagu("start", str(self.dags / f"{dag}.yaml"), "--run-id", run_id, *(["--", *params] if params else []))
        assert res.returncode in (0, 1), res.stderr

    def config(self) -> dict[str, Any]:
        return {"DAGU_HOME": str(self.home), "DAGS_DIR": str(self.dags), "ENVIRON": self.env, "TESTING": True}


def make_data(root: Path) -> Data:
    home, dags = root / "home", root / "dags"
    home.mkdir()
    dags.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGU_", "DAG_"))}
    env["DAGU_HOME"] = str(home)
    data = Data(root, home, dags, env)
    for name, text in {"hello": HELLO, "gated": GATED, "slow": SLOW.replace("{go}", str(root / "go")),
                       "flaky": FLAKY.replace("{ok}", str(root / "ok")), "broken": BROKEN}.items():
        (dags / f"{name}.yaml").write_text(textwrap.dedent(text))
    return data


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    data = make_data(tmp_path_factory.mktemp("web"))
    data.start("hello", "h1")
    data.start("hello", "h2", "WHO=moon")
    return data


@pytest.fixture(scope="module")
def app(data: Data):
    from dagu.web.app import create_app

    return create_app(data.config())


@pytest.fixture
def client(app):
    return app.test_client()


def wait_until(probe: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    """Poll until `probe()` is truthy; its value (a wait, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def run_status(client, dag: str, run_id: str) -> str | None:
    res = client.get(f"/api/v1/runs/{dag}/{run_id}")
    return json.loads(res.data)["status"] if res.status_code == 200 else None


POST = {"headers": {"X-Requested-With": "test"}}
