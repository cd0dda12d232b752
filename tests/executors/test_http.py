"""The http step type against a real HTTP server (tests/executors/server_http.py) on 127.0.0.1,
run through `dagu` as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.executors import server_http
from tests.executors.server_http import HttpServer
from tests.runtime.conftest import Env

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def srv() -> Iterator[HttpServer]:
    server = server_http.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return server_http.self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls(cert: tuple[Path, Path]) -> Iterator[HttpServer]:
    server = server_http.start(cert)
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


def _steps(env: Env, dag: str) -> dict:
    return env.status(dag)["steps"]


def _error(step: dict) -> str:
    return step["attempts"][-1].get("error") or ""


def _no_traceback(env: Env, *texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text
    for path in env.home.rglob("*"):
        if path.is_file():
            assert b"Traceback" not in path.read_bytes(), path


def test_request_method_url_headers_query_and_json_output_fields(env: Env, srv: HttpServer) -> None:
    env.write("get.yaml", f"""
        steps:
          - id: get
            action: http.request
            with:
              method: GET
              url: {srv.url}/echo
              headers: {{X-Trace: abc}}
              query: {{page: 2, q: "a b"}}
            output: RESP
          - id: legacy
            type: http
            command: DELETE {srv.url}/echo/old
          - id: use
            command: echo "path=${{get.output.path}} method=${{get.output.method}}"
            output: USED
        """)
    res = env.run("start", "get.yaml")
    assert res.returncode == 0, res.stderr
    steps = _steps(env, "get")
    assert steps["use"]["output"] == "path=/echo?page=2&q=a+b method=GET"
    first, second = srv.rec.requests[:2]
    assert first["headers"]["X-Trace"] == "abc"
    assert second["method"] == "DELETE" and second["path"] == "/echo/old"


def test_bodies_text_json_form_and_multipart_upload(env: Env, srv: HttpServer) -> None:
    (env.dir / "report.txt").write_text("file content 42\n")
    env.write("post.yaml", f"""
        steps:
          - id: text
            action: http.request
            with: {{method: POST, url: "{srv.url}/echo", body: "plain words",
                    headers: {{Content-Type: text/plain}}}}
          - id: js
            action: http.request
            with: {{method: POST, url: "{srv.url}/echo", body: {{a: 1, b: [x]}}}}
          - id: form
            action: http.request
            with: {{method: POST, url: "{srv.url}/echo", form: {{name: bo, n: 3}}, form_encoding: urlencoded}}
          - id: upload
            action: http.request
            with: {{method: PUT, url: "{srv.url}/echo", form: {{description: nightly}},
                    files: {{document: ./report.txt}}}}
        """)
    res = env.run("start", "post.yaml")
    assert res.returncode == 0, res.stderr
    text, js, form, upload = srv.rec.requests
    assert text["body"] == "plain words" and text["headers"]["Content-Type"] == "text/plain"
    assert json.loads(js["body"]) == {"a": 1, "b": ["x"]}
    assert js["headers"]["Content-Type"] == "application/json"
    assert form["body"] == "name=bo&n=3"
    assert form["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert upload["headers"]["Content-Type"].startswith("multipart/form-data")
    assert 'name="document"; filename="report.txt"' in upload["body"] and "file content 42" in upload["body"]
    assert 'name="description"' in upload["body"] and "nightly" in upload["body"]


def test_format_json_gives_status_headers_body_and_json(env: Env, srv: HttpServer) -> None:
    env.write("fmt.yaml", f"""
        steps:
          - id: call
            action: http.request
            with: {{method: GET, url: "{srv.url}/echo", format: json}}
            output: R
          - id: show
            command: echo "${{call.output.status_code}} ${{call.output.json.method}} ${{call.output.body.path}}"
            output: SHOWN
        """)
    res = env.run("start", "fmt.yaml")
    assert res.returncode == 0, res.stderr
    steps = _steps(env, "fmt")
    doc = json.loads(steps["call"]["output"])
    assert doc["status_code"] == 200 and doc["headers"]["X-Multi"] == ["a"]
    assert doc["json"]["path"] == "/echo" and doc["body"] == doc["json"]
    assert steps["show"]["output"] == "200 GET /echo"


def test_unexpected_status_fails_showing_status_and_body_start(env: Env, srv: HttpServer) -> None:
    env.write("st.yaml", f"""
        steps:
          - id: bad
            action: http.request
            with: {{method: GET, url: "{srv.url}/status/500"}}
            continue_on: {{failure: true}}
          - id: notfound_ok
            action: http.request
            with: {{method: GET, url: "{srv.url}/status/404", expected_status: [404]}}
          - id: denied
            action: http.request
            with: {{method: GET, url: "{srv.url}/status/401"}}
        """)
    res = env.run("start", "st.yaml")
    assert res.returncode != 0
    steps = _steps(env, "st")
    assert steps["bad"]["status"] == "failed"
    error = _error(steps["bad"])
    assert "500" in error and "boom 500 details" in error and f"127.0.0.1:{srv.port}" in error
    assert steps["notfound_ok"]["status"] == "succeeded"
    assert "401" in _error(steps["denied"]) and "with.token" in _error(steps["denied"])
    _no_traceback(env, res.stdout, res.stderr)


def test_redirects_followed_up_to_the_limit(env: Env, srv: HttpServer) -> None:
    env.write("re.yaml", f"""
        steps:
          - id: three
            action: http.request
            with: {{method: GET, url: "{srv.url}/redirect/3", max_redirects: 3}}
            output: R
          - id: loop
            action: http.request
            with: {{method: GET, url: "{srv.url}/loop", max_redirects: 2}}
        """)
    res = env.run("start", "re.yaml")
    steps = _steps(env, "re")
    assert steps["three"]["status"] == "succeeded" and '"path": "/echo"' in steps["three"]["output"]
    assert steps["loop"]["status"] == "failed" and "more than 2 redirects" in _error(steps["loop"])
    assert srv.rec.hits["/loop"] == 3  # the first request and two redirects, then it gave up
    _no_traceback(env, res.stdout, res.stderr)


def test_a_large_body_streams_to_the_log_or_a_file_and_output_is_capped(env: Env, srv: HttpServer) -> None:
    size = 3_000_000
    env.write("big.yaml", f"""
        max_output_size: 100000
        steps:
          - id: to_file
            action: http.request
            with: {{method: GET, url: "{srv.url}/big/{size}", output: out/body.bin}}
          - id: to_log
            action: http.request
            with: {{method: GET, url: "{srv.url}/big/{size}"}}
          - id: captured
            action: http.request
            with: {{method: GET, url: "{srv.url}/big/{size}"}}
            output: BODY
            continue_on: {{failure: true}}
          - id: as_json
            action: http.request
            with: {{method: GET, url: "{srv.url}/big/{size}", format: json}}
            output: J
        """)
    env.run("start", "big.yaml")
    steps = _steps(env, "big")
    assert steps["to_file"]["status"] == "succeeded"
    assert (env.dir / "out" / "body.bin").stat().st_size == size
    assert not [p for p in (env.dir / "out").iterdir() if p.name != "body.bin"]  # no temp file left
    assert steps["to_log"]["status"] == "succeeded"
    logs = next((env.home / "runs" / "big").glob("*/logs"))
    assert (logs / "to_log.1.out").stat().st_size == size
    assert steps["captured"]["status"] == "failed" and "max_output_size (100000 bytes)" in _error(steps["captured"])
    assert steps["as_json"]["status"] == "failed" and "max_output_size (100000 bytes)" in _error(steps["as_json"])


def test_timeout_and_stop_cancel_a_slow_request_on_the_server_too(env: Env, srv: HttpServer) -> None:
    env.write("slow.yaml", f"""
        steps:
          - id: wait
            action: http.request
            with: {{method: GET, url: "{srv.url}/slow"}}
            timeout_sec: 1
        """)
    started = time.monotonic()
    res = env.run("start", "slow.yaml")
    assert res.returncode != 0 and time.monotonic() - started < 10
    assert srv.rec.slow_ended.wait(5), "the server never saw the connection close"
    assert _steps(env, "slow")["wait"]["status"] == "failed"

    srv.rec.slow_started.clear()
    srv.rec.slow_ended.clear()
    env.write("slow2.yaml", f"""
        steps:
          - id: wait
            action: http.request
            with: {{method: GET, url: "{srv.url}/slow"}}
        """)
    proc = env.popen("start", "slow2.yaml")
    try:
        assert srv.rec.slow_started.wait(15), "the request never reached the server"
        stopped = time.monotonic()
        assert env.run("stop", "slow2.yaml").returncode == 0
        proc.wait(15)
        assert time.monotonic() - stopped < 10
    finally:
        if proc.poll() is None:
            proc.kill()
    assert srv.rec.slow_ended.wait(5)
    assert env.status("slow2")["status"] == "aborted"


def test_connection_refused_dns_and_tls_failures_name_host_port(env: Env, tls: HttpServer) -> None:
    from tests.servers import free_port

    port = free_port()
    env.write("fail.yaml", f"""
        steps:
          - id: refused
            action: http.request
            with: {{method: GET, url: "http://127.0.0.1:{port}/x"}}
            continue_on: {{failure: true}}
          - id: dns
            action: http.request
            with: {{method: GET, url: "http://no-such-host.invalid:8080/x"}}
            continue_on: {{failure: true}}
          - id: untrusted
            action: http.request
            with: {{method: GET, url: "{tls.url}/echo"}}
            continue_on: {{failure: true}}
        """)
    res = env.run("start", "fail.yaml")
    steps = _steps(env, "fail")
    assert f"connection refused by 127.0.0.1:{port}" in _error(steps["refused"])
    assert "is the server up" in _error(steps["refused"])
    assert "DNS lookup failed for no-such-host.invalid:8080" in _error(steps["dns"])
    assert f"TLS error talking to 127.0.0.1:{tls.port}" in _error(steps["untrusted"])
    assert "ca_bundle" in _error(steps["untrusted"])
    assert not tls.rec.requests  # verification is on by default: nothing was sent
    _no_traceback(env, res.stdout, res.stderr)


def test_ca_bundle_trusts_a_private_ca(env: Env, tls: HttpServer, cert: tuple[Path, Path]) -> None:
    env.write("ca.yaml", f"""
        steps:
          - id: trusted
            action: http.request
            with: {{method: GET, url: "{tls.url}/echo", ca_bundle: "{cert[0]}"}}
            output: R
        """)
    res = env.run("start", "ca.yaml")
    assert res.returncode == 0, res.stderr
    assert json.loads(_steps(env, "ca")["trusted"]["output"])["path"] == "/echo"


def test_token_and_password_never_reach_a_file_of_the_run(env: Env, srv: HttpServer) -> None:
    token, password = "tok-4c1e9-secret", "pw-77aa1-secret"
    env.write("sec.yaml", f"""
        secrets:
          - name: API_TOKEN
            provider: env
            key: MY_API_TOKEN
        sandbox:
          env_passthrough: [MY_PASS]   # not a secret: only x-secret on with.password masks it
        steps:
          - id: bearer
            action: http.request
            with: {{method: GET, url: "{srv.url}/echo", token: "${{API_TOKEN}}", debug: true, format: json}}
            output: R1
          - id: basic
            action: http.request
            with: {{method: GET, url: "{srv.url}/echo", username: bo, password: "${{MY_PASS}}"}}
            output: R2
        """)
    res = env.run("start", "sec.yaml", env={"MY_API_TOKEN": token, "MY_PASS": password})
    assert res.returncode == 0, res.stderr
    seen = [r["headers"].get("Authorization", "") for r in srv.rec.requests]
    assert seen[0] == f"Bearer {token}" and srv.rec.requests[1]["credentials"] == f"bo:{password}"
    steps = _steps(env, "sec")
    assert "Bearer *****" in steps["bearer"]["output"] and "bo:*****" in steps["basic"]["output"]
    for path in env.home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for value in (token, password):
                assert value.encode() not in data, f"{value} found in {path}"
    assert token not in res.stdout + res.stderr and password not in res.stdout + res.stderr


def test_retry_policy_retries_a_failing_request(env: Env, srv: HttpServer) -> None:
    env.write("retry.yaml", f"""
        steps:
          - id: flaky
            action: http.request
            with: {{method: GET, url: "{srv.url}/flaky"}}
            retry_policy: {{limit: 3, interval_sec: 0}}
            output: R
        """)
    res = env.run("start", "retry.yaml")
    assert res.returncode == 0, res.stderr
    assert srv.rec.hits["/flaky"] == 3
    assert _steps(env, "retry")["flaky"]["output"] == "finally"


def test_typos_in_the_block_are_compile_errors_at_their_place(env: Env) -> None:
    env.write("typo.yaml", """
        steps:
          - id: a
            type: http
            with:
              url: http://127.0.0.1:1/
              header: {A: b}
              max_redirects: lots
              form_encoding: json
        """)
    res = env.run("compile", "typo.yaml")
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "typo.yaml:7:7" in out and "unknown key 'header'" in out and "did you mean 'headers'?" in out
    assert "typo.yaml:8:22" in out and "typo.yaml:9:22" in out


def test_compile_imports_no_client_and_the_example_compiles(env: Env) -> None:
    example = ROOT / "examples" / "http.yaml"
    res = env.run("compile", str(example))
    assert res.returncode == 0, res.stdout + res.stderr
    probe = ("import sys\nfrom dagu.cli import main\nmain(['compile', sys.argv[1]])\n"  # main: `dagu` itself exits at once
             "print(sorted(m for m in ('requests', 'urllib3', 'jq', 'jinja2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe, str(example)], capture_output=True, text=True,
                         env=env.env, cwd=env.dir, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr
