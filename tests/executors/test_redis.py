"""redis steps against a real redis-server (tests/executors/server_redis.py): commands in both
spellings, Lua scripts, pipelines, the reply as output, DAG-level defaults, failures that name
host:port, a password never written, and a blocking command cancelled on the server too."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from tests.executors.server_redis import PASSWORD, client, redis_auth_server, redis_server  # noqa: F401
from tests.runtime.conftest import Env
from tests.servers import Server, free_port

ROOT = Path(__file__).resolve().parents[2]
WRONG = "wr0ng-guess-4471"


def _steps(env: Env, dag: str, run_id: str | None = None) -> dict:
    return env.status(dag, run_id)["steps"]


def _blocked(server, command: str) -> bool:  # noqa: ANN001
    """Whether a client of the server is blocked in `command` now."""
    return any(c.get("cmd") == command for c in server.client_list())


def _no_traceback(env: Env, res: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in res.stdout + res.stderr
    for path in (env.home / "runs").rglob("*"):
        if path.is_file():
            assert b"Traceback" not in path.read_bytes(), path


def test_commands_scripts_and_pipelines_in_both_spellings(env: Env, redis_server: Server) -> None:
    env.write("r.yaml", f"""
        redis:
          host: 127.0.0.1
          port: {redis_server.port}
        steps:
          - id: set
            type: redis
            with: {{command: SET, key: greeting, value: hello, ttl: 600}}
            output: SET_REPLY
          - id: get
            action: redis.get
            with: {{key: greeting}}
            output: GREETING
          - id: hset
            action: redis.hset
            with: {{key: user:1, fields: {{name: ada, langs: "3"}}}}
          - id: hash
            type: redis
            config: {{command: HGETALL, key: user:1}}
            output: USER
          - id: lua
            type: redis
            with:
              script: "redis.call('incrby', KEYS[1], ARGV[1]); return redis.call('get', KEYS[1])"
              script_keys: [counter]
              script_args: [5]
            output: LUA
          - id: pipe
            type: redis
            with:
              pipeline:
                - {{command: RPUSH, key: queue, values: [a, b, c]}}
                - {{command: LRANGE, key: queue, start: 0, stop: -1}}
                - {{command: INCR, key: counter}}
            output: PIPE
          - id: raw_args
            type: redis
            with: {{command: OBJECT, args: [ENCODING, counter]}}
            output: ENCODING
          - id: use
            command: echo "${{GREETING}} ${{hash.output.name}} ${{LUA}} ${{PIPE}}"
            output: ALL
        """)
    res = env.run("start", "r.yaml", "--run-id", "r1")
    assert res.returncode == 0, res.stderr
    steps = _steps(env, "r", "r1")
    assert steps["set"]["output"] == "OK"
    assert steps["get"]["output"] == "hello"
    assert steps["hash"]["output"] == '{"name": "ada", "langs": "3"}'
    assert steps["lua"]["output"] == "5"
    assert steps["pipe"]["output"] == '[3, ["a", "b", "c"], 6]'
    assert steps["raw_args"]["output"] == "int"
    assert steps["use"]["output"] == 'hello ada 5 [3, ["a", "b", "c"], 6]'
    server = client(redis_server)
    assert server.get("greeting") == "hello" and 0 < server.ttl("greeting") <= 600
    assert server.lrange("queue", 0, -1) == ["a", "b", "c"]
    log = (env.home / "runs" / "r" / "r1" / "logs" / "get.1.err").read_text()
    assert f"127.0.0.1:{redis_server.port}" in log and "GET greeting" in log


def test_a_transaction_and_a_failing_command_in_a_pipeline(env: Env, redis_server: Server) -> None:
    client(redis_server).set("text", "not a number")
    env.write("p.yaml", f"""
        redis: {{url: "redis://127.0.0.1:{redis_server.port}/2"}}
        steps:
          - id: tx
            type: redis
            with:
              multi: true
              pipeline:
                - {{command: SET, key: a, value: "1"}}
                - {{command: INCRBY, key: a, value: 41}}
            output: TX
          - id: bad
            depends: [tx]
            type: redis
            with:
              db: 0
              url: "redis://127.0.0.1:{redis_server.port}"
              pipeline:
                - {{command: GET, key: text}}
                - {{command: INCR, key: text}}
        """)
    res = env.run("start", "p.yaml", "--run-id", "p1")
    assert res.returncode != 0
    steps = _steps(env, "p", "p1")
    assert steps["tx"]["output"] == '["OK", 42]'
    assert client(redis_server).execute_command("SELECT", 2) and True
    import redis

    assert redis.Redis(port=redis_server.port, db=2, decode_responses=True).get("a") == "42"  # the url's db
    assert steps["bad"]["status"] == "failed"
    assert "pipeline command 2 (INCR text) failed" in steps["bad"]["reason"]
    assert "not an integer" in steps["bad"]["reason"]
    _no_traceback(env, res)


def test_typos_are_compile_errors_at_their_line(env: Env) -> None:
    env.write("bad.yaml", """
        steps:
          - id: a
            type: redis
            with:
              commnd: GET
              port: abc
              output_format: yaml
              pipeline:
                - {command: GET, kee: x}
        """)
    res = env.run("compile", "bad.yaml")
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert re.search(r"bad\.yaml:6:7: error: unknown key 'commnd'", out) and "did you mean 'command'?" in out
    assert "bad.yaml:7:13: error: 'with.port' of step 'a' must be an integer" in out
    assert re.search(r"bad\.yaml:8:22: error: .*must be one of .*\"yaml\"", out)
    assert "bad.yaml:10:26: error: unknown key 'kee'" in out and "did you mean 'key'?" in out


def test_compiling_imports_no_client_library(env: Env) -> None:
    env.write("c.yaml", """
        redis: {host: 127.0.0.1, port: 1}
        steps:
          - id: a
            action: redis.get
            with: {key: k}
        """)
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "dagu", "compile", "c.yaml"], cwd=env.dir,
                         env=env.env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines() if "import time:" in line}
    assert "dagu.compiler" in imported  # the trace works
    assert not {m for m in imported if m == "redis" or m.startswith(("redis.", "dagu.executors.redis"))}


def test_wrong_password_fails_naming_the_server_and_no_file_holds_the_password(
        env: Env, redis_auth_server: Server) -> None:
    client(redis_auth_server, PASSWORD).set("token", PASSWORD)  # the reply itself holds the secret
    env.write("auth.yaml", f"""
        env:
          - WRONG_PW: "{WRONG}"
        secrets:
          - name: REDIS_PW
            provider: env
            key: MY_REDIS_PW
        redis:
          host: 127.0.0.1
          port: {redis_auth_server.port}
          password: ${{REDIS_PW}}
          max_retries: 0
        steps:
          - id: read
            type: redis
            with: {{command: GET, key: token}}
            output: TOKEN
          - id: wrong
            depends: [read]
            type: redis
            with: {{command: GET, key: token, password: "${{WRONG_PW}}"}}
          - id: none
            depends: [read]
            type: redis
            with: {{command: GET, key: token, password: ""}}
        """)
    res = env.run("start", "auth.yaml", "--run-id", "a1", env={"MY_REDIS_PW": PASSWORD})
    assert res.returncode != 0
    steps = _steps(env, "auth", "a1")
    assert steps["read"]["status"] == "succeeded" and steps["read"]["output"] == "*****"
    where = f"127.0.0.1:{redis_auth_server.port}"
    for step in ("wrong", "none"):
        assert steps[step]["status"] == "failed"
        assert where in steps[step]["reason"] and "authentication failed" in steps[step]["reason"], steps[step]
    _no_traceback(env, res)
    files = [p for p in env.home.rglob("*") if p.is_file()]
    assert any(p.name == "read.1.out" for p in files)
    for path in files:  # the run folder, the plan cache, everything dagu wrote
        data = path.read_bytes()
        assert PASSWORD.encode() not in data, path
        if "plans" not in path.parts and path.name != "plan.json":  # a literal is in the plan, not the run
            assert WRONG.encode() not in data, path  # an x-secret with: field


def test_refused_tls_and_dns_failures_name_host_port_without_traceback(env: Env, redis_server: Server) -> None:
    closed = free_port()
    env.write("f.yaml", f"""
        steps:
          - id: refused
            type: redis
            with: {{host: 127.0.0.1, port: {closed}, command: PING, max_retries: 1}}
            continue_on: {{failure: true}}
          - id: tls
            depends: [refused]
            type: redis
            with: {{host: 127.0.0.1, port: {redis_server.port}, tls: true, command: PING, timeout: 3}}
            continue_on: {{failure: true}}
          - id: dns
            depends: [tls]
            type: redis
            with: {{host: no-such-host.invalid, command: PING, max_retries: 0}}
        """)
    res = env.run("start", "f.yaml", "--run-id", "f1")
    assert res.returncode != 0
    steps = _steps(env, "f", "f1")
    refused = steps["refused"]["reason"]
    assert f"127.0.0.1:{closed}" in refused and "connection failed" in refused and "port right" in refused
    tls = steps["tls"]["reason"]
    assert f"127.0.0.1:{redis_server.port}" in tls and "TLS failed" in tls and "tls_ca" in tls
    dns = steps["dns"]["reason"]
    assert "no-such-host.invalid:6379" in dns and ("DNS" in dns or "connection failed" in dns)
    log = (env.home / "runs" / "f" / "f1" / "logs" / "refused.1.err").read_text()
    assert "retrying (1/1)" in log
    _no_traceback(env, res)


def test_retry_policy_retries_a_failing_redis_step(env: Env) -> None:
    env.write("retry.yaml", f"""
        steps:
          - id: flaky
            type: redis
            with: {{host: 127.0.0.1, port: {free_port()}, command: PING, max_retries: 0}}
            retry_policy: {{limit: 2, interval_sec: 0}}
        """)
    res = env.run("start", "retry.yaml", "--run-id", "t1")
    assert res.returncode != 0
    step = _steps(env, "retry", "t1")["flaky"]
    assert step["status"] == "failed" and len(step["attempts"]) == 3


def test_timeout_cancels_a_blocking_command_on_the_server(env: Env, redis_server: Server) -> None:
    env.write("block.yaml", f"""
        max_clean_up_time_sec: 3
        steps:
          - id: wait
            type: redis
            with: {{host: 127.0.0.1, port: {redis_server.port}, command: BLPOP, key: jobs, block: 60000}}
            timeout_sec: 2
        """)
    started = time.monotonic()
    res = env.run("start", "block.yaml", "--run-id", "b1")
    elapsed = time.monotonic() - started
    assert res.returncode != 0
    assert elapsed < 2 + 3 + 2, elapsed  # the timeout, within the grace period (and start-up)
    assert _steps(env, "block", "b1")["wait"]["status"] == "failed"
    server = client(redis_server)
    assert not _blocked(server, "blpop")  # the server let go of it
    server.rpush("jobs", "x")
    time.sleep(0.2)
    assert server.llen("jobs") == 1  # nobody popped it: no blocked client lingers
    _no_traceback(env, res)


def test_dagu_stop_ends_a_blocking_command(env: Env, redis_server: Server) -> None:
    env.write("stopme.yaml", f"""
        steps:
          - id: wait
            type: redis
            with: {{host: 127.0.0.1, port: {redis_server.port}, command: BRPOP, keys: [stop-q], block: 60000}}
        """)
    proc = env.popen("start", "stopme.yaml", "--run-id", "s1")
    server = client(redis_server)
    deadline = time.monotonic() + 20
    while not _blocked(server, "brpop"):
        assert time.monotonic() < deadline and proc.poll() is None, "the step never blocked"
        time.sleep(0.05)
    started = time.monotonic()
    assert env.run("stop", "stopme.yaml").returncode == 0
    proc.wait(15)
    assert time.monotonic() - started < 6
    assert env.status("stopme", "s1")["status"] == "aborted"
    time.sleep(0.1)
    assert not _blocked(server, "brpop")


def test_large_replies_are_capped(env: Env, redis_server: Server) -> None:
    client(redis_server).rpush("big", *[f"item-{i:05d}" for i in range(5000)])
    env.write("big.yaml", f"""
        max_output_size: 10000
        redis: {{host: 127.0.0.1, port: {redis_server.port}}}
        steps:
          - id: over_output
            type: redis
            with: {{command: LRANGE, key: big}}
            output: ITEMS
            continue_on: {{failure: true}}
          - id: over_result
            depends: [over_output]
            type: redis
            with: {{command: LRANGE, key: big, max_result_size: 2000, output_format: jsonl}}
        """)
    res = env.run("start", "big.yaml", "--run-id", "g1")
    assert res.returncode != 0
    steps = _steps(env, "big", "g1")
    assert "max_output_size (10000 bytes)" in steps["over_output"]["reason"]
    assert "max_result_size (2000 bytes)" in steps["over_result"]["reason"]
    written = (env.home / "runs" / "big" / "g1" / "logs" / "over_result.1.out").read_text()
    assert written.startswith('"item-00000"\n') and len(written) <= 2000


def test_the_example_compiles(env: Env) -> None:
    res = subprocess.run([sys.executable, "-m", "dagu", "compile", str(ROOT / "examples" / "redis.yaml")],
                         cwd=env.dir, env=env.env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_a_held_lock_fails_the_step_and_a_free_one_is_released(env: Env, redis_server: Server) -> None:
    server = client(redis_server)
    server.set("held", "someone-else")
    env.write("lock.yaml", f"""
        redis: {{host: 127.0.0.1, port: {redis_server.port}}}
        steps:
          - id: free
            type: redis
            with: {{lock: free-lock, command: SCAN, match: "held*"}}
            output: KEYS
          - id: busy
            type: redis
            with: {{lock: held, lock_retry: 2, lock_wait: 10, command: PING}}
        """)
    res = env.run("start", "lock.yaml", "--run-id", "l1")
    assert res.returncode != 0
    steps = _steps(env, "lock", "l1")
    assert steps["free"]["output"] == '["held"]'
    assert server.get("free-lock") is None  # released after the command
    assert "lock 'held' is held by someone else" in steps["busy"]["reason"]
    assert server.get("held") == "someone-else"  # never taken or freed by the step
