"""s3 steps against the moto S3 server (tests/executors/server_s3.py).

moto does NOT check request signatures: any secret key is accepted, so these tests cannot show
that a wrong secret is refused.  They do show a refused access key (moto's IAM mode), and that
the secret never reaches a file of the run.  Everything else is moto's real S3 API: multipart
uploads, listing, copies, deletes."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.executors.server_s3 import s3_auth_server, s3_client, s3_defaults, s3_server  # noqa: F401
from tests.runtime.conftest import Env
from tests.servers import Server, free_port

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3-Secret-Key-90210"


def _steps(env: Env, dag: str, run_id: str) -> dict:
    return env.status(dag, run_id)["steps"]


def _bucket(server: Server, name: str) -> None:
    s3_client(server).create_bucket(Bucket=name)


def _no_traceback(env: Env, res: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in res.stdout + res.stderr
    for path in (env.home / "runs").rglob("*"):
        if path.is_file():
            assert b"Traceback" not in path.read_bytes(), path


def test_a_large_upload_is_multipart_and_comes_back_byte_identical(env: Env, s3_server: Server) -> None:
    _bucket(s3_server, "big")
    data = os.urandom(12 * 1024 * 1024 + 123)
    (env.dir / "big.bin").write_bytes(data)
    env.write("up.yaml", s3_defaults(s3_server, "big", secret_from="MY_SECRET") + """
        steps:
          - id: up
            type: s3
            command: upload
            with: {key: in/big.bin, source: big.bin, part_size: 5}
            output: UP
          - id: copy
            type: s3
            command: copy
            with: {source_key: in/big.bin, key: copies/big.bin}
          - id: down
            action: s3.download
            with: {key: copies/big.bin, destination: out/}
            output: DOWN
          - id: ls
            action: s3.list
            with: {prefix: copies/}
            output: LISTING
          - id: rm
            type: s3
            command: delete
            with: {prefix: copies/}
            output: RM
          - id: show
            command: echo "${up.output.size} ${DOWN.destination} ${RM.deleted}"
            output: SHOWN
        """)
    res = env.run("start", "up.yaml", "--run-id", "u1", env={"MY_SECRET": SECRET})
    assert res.returncode == 0, res.stderr
    steps = _steps(env, "up", "u1")
    assert steps["show"]["output"] == f"{len(data)} {env.dir / 'out' / 'big.bin'} 1"
    assert hashlib.sha256((env.dir / "out" / "big.bin").read_bytes()).digest() == hashlib.sha256(data).digest()
    assert os.listdir(env.dir / "out") == ["big.bin"]  # the temporary file was renamed, none left
    head = s3_client(s3_server).head_object(Bucket="big", Key="in/big.bin")
    assert head["ETag"].strip('"').endswith("-3")  # three parts of 5 MB, 5 MB and the rest
    log = s3_server.log.read_text()
    assert re.search(r'"POST /big/in/big\.bin\?uploads', log) and "partNumber=3" in log
    import json

    listing = json.loads(steps["ls"]["output"])
    assert [e["key"] for e in listing] == ["copies/big.bin"] and listing[0]["size"] == len(data)
    assert "Contents" not in s3_client(s3_server).list_objects_v2(Bucket="big", Prefix="copies/")
    for path in env.home.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    log = (env.home / "runs" / "up" / "u1" / "logs" / "up.1.err").read_text()
    assert "uploaded" in log and "(100%)" in log  # progress streamed to the step's log


def test_get_to_output_and_list_capped(env: Env, s3_server: Server) -> None:
    _bucket(s3_server, "many")
    client = s3_client(s3_server)
    for i in range(25):
        client.put_object(Bucket="many", Key=f"logs/{i:03d}.txt", Body=b"line\n" * i)
    client.put_object(Bucket="many", Key="config.json", Body=b'{"mode": "fast", "n": 3}')
    client.put_object(Bucket="many", Key="large.txt", Body=b"x" * 50_000)
    env.write("get.yaml", s3_defaults(s3_server, "many") + """
        max_output_size: 20000
        steps:
          - id: cfg
            action: s3.download
            with: {key: config.json, access_key_id: k, secret_access_key: "${DUMMY_KEY}"}
            output: CFG
          - id: ls
            type: s3
            command: list
            with: {prefix: logs/, max_keys: 10, access_key_id: k, secret_access_key: "${DUMMY_KEY}"}
            output: LS
          - id: too_big
            type: s3
            command: get
            with: {key: large.txt, access_key_id: k, secret_access_key: "${DUMMY_KEY}"}
            output: BIG
          - id: use
            depends: [cfg]
            command: echo "${CFG.mode}"
            output: MODE
        """)
    res = env.run("start", "get.yaml", "--run-id", "g1")
    assert res.returncode != 0
    steps = _steps(env, "get", "g1")
    assert steps["use"]["output"] == "fast"
    import json

    assert [e["key"] for e in json.loads(steps["ls"]["output"])] == [f"logs/{i:03d}.txt" for i in range(10)]
    log = (env.home / "runs" / "get" / "g1" / "logs" / "ls.1.err").read_text()
    assert "stopped at max_keys (10)" in log
    assert steps["too_big"]["status"] == "failed"
    assert "max_output_size (20000 bytes)" in steps["too_big"]["reason"]
    _no_traceback(env, res)


def test_typos_are_compile_errors_at_their_line(env: Env) -> None:
    env.write("bad.yaml", """
        steps:
          - id: a
            type: s3
            command: upload
            with:
              buckt: b
              part_size: 1
              acl: world
              force_path_style: "yes"
        """)
    res = env.run("compile", "bad.yaml")
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "bad.yaml:7:7: error: unknown key 'buckt'" in out and "did you mean 'bucket'?" in out
    assert re.search(r"bad\.yaml:8:18: error: .*part_size", out)
    assert re.search(r"bad\.yaml:9:12: error: .*must be one of", out)
    assert re.search(r"bad\.yaml:10:25: error: .*must be true or false", out)


def test_compiling_imports_no_client_library(env: Env) -> None:
    env.write("c.yaml", """
        s3: {bucket: b, endpoint: "http://127.0.0.1:1"}
        steps:
          - id: a
            action: s3.list
        """)
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "dagu", "compile", "c.yaml"], cwd=env.dir,
                         env=env.env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines() if "import time:" in line}
    assert "dagu.compiler" in imported
    assert not {m for m in imported if m.split(".")[0] in ("boto3", "botocore", "s3transfer")
                or m.startswith("dagu.executors.s3")}


def test_refused_dns_and_auth_failures_name_the_endpoint(env: Env, s3_auth_server: Server) -> None:
    closed = free_port()
    env.write("f.yaml", f"""
        env:
          - DUMMY_KEY: s
        secrets:
          - name: S3_KEY
            provider: env
            key: S3_TEST_SECRET
        steps:
          - id: refused
            type: s3
            command: list
            with: {{endpoint: "http://127.0.0.1:{closed}", bucket: b, access_key_id: k, secret_access_key: "${{DUMMY_KEY}}"}}
            continue_on: {{failure: true}}
          - id: dns
            depends: [refused]
            type: s3
            command: list
            with: {{endpoint: "http://no-such-host.invalid:9000", bucket: b, access_key_id: k, secret_access_key: "${{DUMMY_KEY}}"}}
            continue_on: {{failure: true}}
          - id: auth
            depends: [dns]
            type: s3
            command: list
            with:
              endpoint: "http://127.0.0.1:{s3_auth_server.port}"
              bucket: b
              access_key_id: AKIANOSUCHKEY
              secret_access_key: ${{S3_KEY}}
        """)
    res = env.run("start", "f.yaml", "--run-id", "f1", timeout=120, env={"S3_TEST_SECRET": SECRET})
    assert res.returncode != 0
    steps = _steps(env, "f", "f1")
    refused = steps["refused"]["reason"]
    assert f"127.0.0.1:{closed}" in refused and "connection failed" in refused and "port right" in refused
    dns = steps["dns"]["reason"]
    assert "no-such-host.invalid:9000" in dns and ("DNS" in dns or "connection failed" in dns)
    auth = steps["auth"]["reason"]
    assert f"127.0.0.1:{s3_auth_server.port}" in auth and "authentication failed (InvalidAccessKeyId" in auth
    _no_traceback(env, res)
    for path in (env.home / "runs").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_retry_policy_retries_a_failing_s3_step(env: Env, s3_server: Server) -> None:
    env.write("retry.yaml", s3_defaults(s3_server, "no-such-bucket") + """
        steps:
          - id: flaky
            type: s3
            command: list
            with: {access_key_id: k, secret_access_key: "${DUMMY_KEY}"}
            retry_policy: {limit: 2, interval_sec: 0}
        """)
    res = env.run("start", "retry.yaml", "--run-id", "t1")
    assert res.returncode != 0
    step = _steps(env, "retry", "t1")["flaky"]
    assert len(step["attempts"]) == 3 and "not found (NoSuchBucket)" in step["reason"]


def test_stop_during_a_large_upload_aborts_the_multipart_upload(env: Env, s3_server: Server) -> None:
    _bucket(s3_server, "slow")
    with open(env.dir / "huge.bin", "wb") as fh:
        fh.truncate(40 * 1024 * 1024)  # sparse: cheap to make, 40 MB to send
    env.write("slow.yaml", s3_defaults(s3_server, "slow") + """
        steps:
          - id: up
            type: s3
            command: put
            with: {key: huge.bin, source: huge.bin, part_size: 5, concurrency: 2, max_bandwidth: 2000000,
                   access_key_id: k, secret_access_key: "${DUMMY_KEY}"}
        """)
    proc = env.popen("start", "slow.yaml", "--run-id", "s1")
    client = s3_client(s3_server)
    deadline = time.monotonic() + 30
    while not client.list_multipart_uploads(Bucket="slow").get("Uploads"):
        assert time.monotonic() < deadline and proc.poll() is None, "the upload never started"
        time.sleep(0.05)
    started = time.monotonic()
    assert env.run("stop", "slow.yaml").returncode == 0
    proc.wait(20)
    assert time.monotonic() - started < 6  # within the grace period (5 s)
    assert env.status("slow", "s1")["status"] == "aborted"
    time.sleep(0.3)
    assert not client.list_multipart_uploads(Bucket="slow").get("Uploads")  # aborted on the server
    assert "Contents" not in client.list_objects_v2(Bucket="slow")


def test_timeout_during_a_download_leaves_no_partial_file(env: Env, s3_server: Server) -> None:
    _bucket(s3_server, "dl-bucket")
    s3_client(s3_server).put_object(Bucket="dl-bucket", Key="blob", Body=b"\0" * (30 * 1024 * 1024))
    env.write("dl.yaml", s3_defaults(s3_server, "dl-bucket") + """
        steps:
          - id: down
            type: s3
            command: download
            with: {key: blob, destination: got/blob, part_size: 5, max_bandwidth: 2000000,
                   access_key_id: k, secret_access_key: "${DUMMY_KEY}"}
            timeout_sec: 2
        """)
    started = time.monotonic()
    res = env.run("start", "dl.yaml", "--run-id", "d1")
    assert res.returncode != 0 and time.monotonic() - started < 2 + 5 + 3
    assert _steps(env, "dl", "d1")["down"]["status"] == "failed"
    assert not (env.dir / "got").exists() or os.listdir(env.dir / "got") == []
    _no_traceback(env, res)


@pytest.mark.parametrize("name", ["s3.yaml"])
def test_the_example_compiles(env: Env, name: str) -> None:
    res = subprocess.run([sys.executable, "-m", "dagu", "compile", str(ROOT / "examples" / name)],
                         cwd=env.dir, env=env.env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
