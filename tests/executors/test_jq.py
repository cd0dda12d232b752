"""The jq step type (real libjq through the `jq` binding), run through `dagu` as a user would.
jq needs no server: its input comes from an earlier step's output, a file or inline data."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.runtime.conftest import Env

ROOT = Path(__file__).resolve().parents[2]


def _steps(env: Env, dag: str) -> dict:
    return env.status(dag)["steps"]


def test_filter_over_an_earlier_output_a_file_and_inline_data(env: Env) -> None:
    (env.dir / "in.json").write_text(json.dumps({"users": [{"name": "ann", "age": 31}, {"name": "bo", "age": 7}]}))
    env.write("jq.yaml", """
        steps:
          - id: fetch
            command: |
              echo '{"items": [{"name": "a", "quantity": 1}, {"name": "b", "quantity": 5}]}'
            output: RAW
          - id: from_output
            action: jq.filter
            with:
              filter: "[.items[] | select(.quantity > 2) | .name]"
              data: ${RAW}
              compact: true
            output: BIG
          - id: from_file
            type: jq
            command: .users[0]
            with: {input: in.json}
            output: FIRST
          - id: inline_raw
            action: jq.filter
            with:
              filter: .items[].name
              data: {items: [{name: x}, {name: "y z"}]}
              raw: true
            output: NAMES
          - id: use
            command: echo "${from_file.output.name} is ${from_file.output.age}; ${BIG}"
            output: USED
        """)
    res = env.run("start", "jq.yaml")
    assert res.returncode == 0, res.stderr
    steps = _steps(env, "jq")
    assert steps["from_output"]["output"] == '["b"]'
    assert json.loads(steps["from_file"]["output"]) == {"name": "ann", "age": 31}
    assert steps["from_file"]["output"].startswith('{\n    "name"')  # indented as upstream prints
    assert steps["inline_raw"]["output"] == "x\ny z"
    assert steps["use"]["output"] == 'ann is 31; ["b"]'


def test_a_filter_that_does_not_compile_is_a_compile_error_at_its_line(env: Env) -> None:
    env.write("bad.yaml", """
        steps:
          - id: a
            action: jq.filter
            with:
              filter: ".items[] | {name: .name"
              data: {items: []}
          - id: b
            type: jq
            command: .x | nosuchfn
            script: '{"x": 1}'
          - id: c
            type: jq
            command: .x
            with: {rwa: true, data: {x: 1}}
        """)
    res = env.run("compile", "bad.yaml")
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "bad.yaml:6:34" in out and "jq filter of step 'a': the filter does not compile" in out
    assert "bad.yaml:10:19" in out and "nosuchfn/0 is not defined" in out
    assert "bad.yaml:15:12" in out and "did you mean 'raw'?" in out
    assert "Traceback" not in out


def test_a_filter_known_only_at_run_time_is_checked_then(env: Env) -> None:
    env.write("late.yaml", """
        params:
          - F: ".a | {"
        steps:
          - id: a
            action: jq.filter
            with: {filter: "${F}", data: {a: 1}}
            retry_policy: {limit: 2, interval_sec: 0}
        """)
    assert env.run("compile", "late.yaml").returncode == 0
    res = env.run("start", "late.yaml")
    assert res.returncode != 0 and "Traceback" not in res.stderr
    step = _steps(env, "late")["a"]
    assert len(step["attempts"]) == 3  # retry_policy retried it
    assert "the filter does not compile" in step["attempts"][-1]["error"]


def test_timeout_stops_a_long_filter(env: Env) -> None:
    env.write("long.yaml", """
        steps:
          - id: forever
            action: jq.filter
            with: {filter: "range(0; 1e12) | select(. % 1000000 == 0)", data: 0}
            timeout_sec: 1
        """)
    started = time.monotonic()
    res = env.run("start", "long.yaml")
    assert res.returncode != 0 and time.monotonic() - started < 15
    assert _steps(env, "long")["forever"]["status"] == "failed"


def test_a_secret_in_the_data_never_reaches_a_file_of_the_run(env: Env) -> None:
    secret = "jq-secret-5521"
    env.write("sec.yaml", """
        secrets:
          - name: TOKEN
            provider: env
            key: MY_TOKEN
        steps:
          - id: a
            action: jq.filter
            with: {filter: ".t", data: {t: "${TOKEN}"}, raw: true}
            output: T
        """)
    res = env.run("start", "sec.yaml", env={"MY_TOKEN": secret})
    assert res.returncode == 0, res.stderr
    assert _steps(env, "sec")["a"]["output"] == "*****"
    for path in env.home.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_the_example_compiles_and_compile_loads_no_http_or_template_client(env: Env) -> None:
    example = ROOT / "examples" / "jq.yaml"
    res = env.run("compile", str(example))
    assert res.returncode == 0, res.stdout + res.stderr
    probe = ("import sys\nfrom dagu.cli import main\nmain(['compile', sys.argv[1]])\n"  # main: `dagu` itself exits at once
             "print(sorted(m for m in ('requests', 'urllib3', 'jq', 'jinja2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe, str(example)], capture_output=True, text=True,
                         env=env.env, cwd=env.dir, timeout=60)
    # the libjq binding (a small C extension) is loaded to check the filters, and nothing else
    assert out.stdout.strip().splitlines()[-1] == "['jq']", out.stdout + out.stderr
