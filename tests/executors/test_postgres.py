"""The postgres step against a real PostgreSQL 15 server (tests/executors/server_postgres.py),
started once for this module."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.executors.conftest import Env
from tests.executors.server_postgres import PASSWORD, Postgres, start_postgres
from tests.servers import free_port

REPO = Path(__file__).resolve().parents[2]
EVIL = "'; DROP TABLE items; --"


@pytest.fixture(scope="module")
def pg() -> Iterator[Postgres]:
    yield from start_postgres()


@pytest.fixture
def items(pg: Postgres) -> Postgres:
    pg.query("DROP TABLE IF EXISTS items")
    pg.query("CREATE TABLE items (id serial PRIMARY KEY, name text, price numeric(10,2), tags jsonb)")
    pg.query("INSERT INTO items (name, price, tags) VALUES ('apple', 1.25, '[\"fruit\"]'), ('nut', 3, NULL)")
    return pg


def _run_dir(env: Env, dag: str) -> Path:
    [run_dir] = [p for p in (env.home / "runs" / dag).iterdir() if not p.name.startswith(".")]
    return run_dir


def test_named_params_are_bound_and_rows_stream_as_json_lines(env: Env, items: Postgres) -> None:
    env.write("q.yaml", f"""
        params:
          - NAME: "{EVIL}"
        steps:
          - id: insert
            type: postgres
            with: {{dsn: "{items.dsn()}", params: {{name: "${{NAME}}", price: 7}}}}
            command: "INSERT INTO items (name, price) VALUES (:name, :price)"
          - id: one
            action: postgres.query
            with:
              dsn: "{items.dsn()}"
              params: {{name: "${{NAME}}"}}
              query: "SELECT id, name, price::int AS price, 'it''s 100%' AS note FROM items WHERE name = :name"
            output: ONE
          - id: all
            type: postgres
            with: {{dsn: "{items.dsn()}"}}
            command: "SELECT name, price, tags FROM items ORDER BY id"
          - id: use
            command: echo "id=${{ONE.id}} note=${{one.output.note}}"
            output: USE
        """)
    res = env.run("start", "q.yaml")
    assert res.returncode == 0, res.stderr
    assert items.query("SELECT name FROM items ORDER BY id") == [("apple",), ("nut",), (EVIL,)]
    st = env.status("q")
    assert json.loads(st["steps"]["one"]["output"]) == {"id": 3, "name": EVIL, "price": 7, "note": "it's 100%"}
    assert st["steps"]["use"]["output"] == "id=3 note=it's 100%"
    lines = (_run_dir(env, "q") / "logs" / "all.1.out").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"name": "apple", "price": 1.25, "tags": ["fruit"]}, {"name": "nut", "price": 3, "tags": None},
        {"name": EVIL, "price": 7, "tags": None}]


def test_a_script_is_one_transaction_rolled_back_on_failure(env: Env, items: Postgres) -> None:
    env.write("tx.yaml", f"""
        steps:
          - id: script
            type: postgres
            with: {{dsn: "{items.dsn()}", output_format: csv, headers: true}}
            script: |
              -- statements; split outside literals, comments and dollar quotes
              INSERT INTO items (name) VALUES ('semi;colon');
              DO $$ BEGIN UPDATE items SET price = 0; END; $$;
              SELECT count(*) AS n FROM items;
              SELECT 1 / 0;
        """)
    res = env.run("start", "tx.yaml")
    assert res.returncode != 0
    step = env.status("tx")["steps"]["script"]
    error = step["attempts"][-1]["error"]
    assert "statement 4 failed: division by zero (SQLSTATE 22012)" in error and "rolled back" in error, error
    assert f"127.0.0.1:{items.port}/postgres" in error
    assert (_run_dir(env, "tx") / "logs" / "script.1.out").read_text() == "n\n3\n"
    assert items.query("SELECT name, price FROM items ORDER BY id")[:2] == [("apple", 1.25), ("nut", 3)] or \
        [r[0] for r in items.query("SELECT name FROM items ORDER BY id")] == ["apple", "nut"]
    assert items.query("SELECT count(*) FROM items WHERE price = 0") == [(0,)]
    assert "Traceback" not in res.stderr


def test_a_large_result_streams_to_a_file_and_the_output_cap_is_named(env: Env, pg: Postgres) -> None:
    env.write("big.yaml", f"""
        max_output_size: 1000
        steps:
          - id: export
            type: postgres
            with: {{dsn: "{pg.dsn()}", output_format: csv, output_file: big.csv, streaming: true}}
            command: "SELECT g, md5(g::text) FROM generate_series(1, 200000) g"
          - id: capped
            type: postgres
            depends: [export]
            with: {{dsn: "{pg.dsn()}"}}
            command: "SELECT g FROM generate_series(1, 5000) g"
            output: ROWS
        """)
    res = env.run("start", "big.yaml")
    assert res.returncode != 0
    with open(env.dir / "big.csv") as fh:
        assert sum(1 for _ in fh) == 200000
    st = env.status("big")
    assert st["steps"]["export"]["status"] == "succeeded"
    assert "max_output_size (1000 bytes)" in st["steps"]["capped"]["attempts"][-1]["error"]


def _sleepers(pg: Postgres, dag: str) -> list[tuple]:
    """The step's sessions on the server (it names itself `dagu DAG/STEP`) and what they run."""
    return pg.query("SELECT pid, state, wait_event FROM pg_stat_activity WHERE application_name = %s",
                    (f"dagu {dag}/slow",))


def _sleeping(pg: Postgres, dag: str) -> bool:
    return any(row[2] == "PgSleep" for row in _sleepers(pg, dag))


def test_a_timeout_cancels_the_query_on_the_server(env: Env, pg: Postgres) -> None:
    env.write("slow.yaml", f"""
        max_clean_up_time_sec: 3
        steps:
          - id: slow
            type: postgres
            timeout_sec: 2
            with: {{dsn: "{pg.dsn()}"}}
            command: "SELECT pg_sleep(60)"
        """)
    started = time.monotonic()
    proc = env.popen("start", "slow.yaml")
    try:
        while not _sleeping(pg, "slow"):  # the query really runs on the server first
            assert time.monotonic() - started < 20 and proc.poll() is None, "the query never started"
            time.sleep(0.05)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    elapsed = time.monotonic() - started
    assert proc.returncode != 0
    assert elapsed < 2 + 3 + 3, elapsed
    step = env.status("slow")["steps"]["slow"]
    assert step["status"] == "failed" and "timed out" in step["attempts"][-1]["error"]
    deadline = time.monotonic() + 3
    while _sleepers(pg, "slow") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _sleepers(pg, "slow") == []


def test_dagu_stop_cancels_the_query_and_rolls_back(env: Env, items: Postgres) -> None:
    env.write("stop.yaml", f"""
        steps:
          - id: slow
            type: postgres
            with: {{dsn: "{items.dsn()}"}}
            script: |
              DELETE FROM items;
              SELECT pg_sleep(60);
        """)
    proc = env.popen("start", "stop.yaml")
    try:
        deadline = time.monotonic() + 20
        while not _sleeping(items, "stop"):
            assert time.monotonic() < deadline and proc.poll() is None, "the query never started"
            time.sleep(0.05)
        started = time.monotonic()
        assert env.run("stop", "stop.yaml").returncode == 0
        proc.wait(timeout=20)
        assert time.monotonic() - started < 8
    finally:
        if proc.poll() is None:
            proc.kill()
    assert env.status("stop")["status"] == "aborted"
    deadline = time.monotonic() + 3
    while _sleepers(items, "stop") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _sleepers(items, "stop") == []
    assert items.query("SELECT count(*) FROM items") == [(2,)]  # the DELETE was rolled back


def test_failures_name_host_port_and_a_hint_and_the_password_is_never_written(env: Env, pg: Postgres) -> None:
    refused = free_port()
    env.write("bad.yaml", f"""
        type: graph
        env:
          - BAD_PW: not-it
        secrets:
          - name: PG_PASS
            provider: env
            key: TEST_PG_PASS
        steps:
          - id: refused
            type: postgres
            retry_policy: {{limit: 1, interval_sec: 0}}
            with: {{dsn: "host=127.0.0.1 port={refused} user=test"}}
            command: SELECT 1
          - id: dns
            type: postgres
            with: {{dsn: "host=no-such-host.invalid port=5432 user=test"}}
            command: SELECT 1
          - id: badpass
            type: postgres
            with: {{dsn: "{pg.dsn('pwuser')}", password: "${{BAD_PW}}"}}
            command: SELECT 1
          - id: goodpass
            type: postgres
            with: {{dsn: "{pg.dsn('pwuser')}", password: "${{PG_PASS}}"}}
            command: SELECT current_user AS who
            output: WHO
          - id: inline
            type: postgres
            with: {{dsn: "{pg.dsn('pwuser')} password=${{PG_PASS}}"}}
            command: SELECT 2 AS two
        """)
    res = env.run("start", "bad.yaml", env={"TEST_PG_PASS": PASSWORD})
    assert res.returncode != 0
    steps = env.status("bad")["steps"]
    err = {k: (v["attempts"][-1].get("error") or "") for k, v in steps.items()}
    assert len(steps["refused"]["attempts"]) == 2  # retry_policy retried it
    assert f"127.0.0.1:{refused}: connection refused" in err["refused"]
    assert "no-such-host.invalid:5432: DNS lookup failed" in err["dns"]
    assert f"127.0.0.1:{pg.port}/postgres: authentication failed for pwuser" in err["badpass"]
    assert steps["goodpass"]["status"] == "succeeded" and json.loads(steps["goodpass"]["output"]) == {"who": "pwuser"}
    assert steps["inline"]["status"] == "succeeded"
    assert "Traceback" not in res.stdout + res.stderr
    for path in [*env.home.rglob("*"), *env.dir.rglob("*")]:
        if path.is_file():
            data = path.read_bytes()
            assert PASSWORD.encode() not in data, path
            assert b"Traceback" not in data, path


def test_compile_errors_are_located_and_compiling_imports_no_psycopg(env: Env) -> None:
    path = env.write("typo.yaml", """
        steps:
          - id: q
            type: postgres
            with:
              dsn: "host=127.0.0.1"
              isolation_level: snapshot
              output_formatt: csv
            command: SELECT 1
          - id: r
            type: postgres
            command: SELECT 1
        """)
    res = env.run("compile", str(path), "-o", str(env.dir / "out"))
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "typo.yaml:7:" in out and "isolation_level" in out
    assert "typo.yaml:8:" in out and "did you mean 'output_format'" in out
    assert "typo.yaml:10:" in out and "dsn" in out
    ok = env.write("ok.yaml", "steps:\n  - {id: q, type: postgres, with: {dsn: 'host=x'}, command: SELECT 1}\n")
    code = ("import sys; from dagu.cli import main\n"
            f"try:\n    main(['compile', {str(ok)!r}, '-o', {str(env.dir / 'out')!r}])\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "print(sorted(m for m in ('psycopg', 'dagu.executors.postgres') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=env.dir, env=env.env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_the_example_compiles(env: Env) -> None:
    res = env.run("compile", str(REPO / "examples" / "postgres.yaml"), "-o", str(env.dir / "out"))
    assert res.returncode == 0, res.stdout + res.stderr


def test_import_upserts_json_lines(env: Env, items: Postgres) -> None:
    (env.dir / "items.jsonl").write_text('{"id": 1, "name": "apple2", "price": 2.5, "tags": null}\n'
                                         '{"id": 10, "name": "kiwi", "price": 0.75, "tags": ["green"]}\n')
    env.write("imp.yaml", f"""
        steps:
          - id: load
            action: postgres.import
            with:
              dsn: "{items.dsn()}"
              import: {{input_file: items.jsonl, table: public.items, on_conflict: replace, conflict_target: id}}
            output: LOADED
        """)
    res = env.run("start", "imp.yaml")
    assert res.returncode == 0, res.stderr
    assert json.loads(env.status("imp")["steps"]["load"]["output"])["rows_imported"] == 2
    assert items.query("SELECT id, name, price::float, tags FROM items ORDER BY id") == [
        (1, "apple2", 2.5, None), (2, "nut", 3.0, None), (10, "kiwi", 0.75, ["green"])]


def _peak_rss_kib(env: Env, rows: int, pg: Postgres) -> int:
    """The largest resident size of `dagu start` (and what it started) running a query of `rows` rows."""
    env.write(f"mem{rows}.yaml", f"""
        steps:
          - id: big
            type: postgres
            with: {{dsn: "{pg.dsn()}", output_format: csv, output_file: big{rows}.csv, streaming: true}}
            command: "SELECT g, md5(g::text) AS h FROM generate_series(1, {rows}) g"
        """)
    code = ("import resource, subprocess, sys\n"
            f"r = subprocess.run([sys.executable, '-m', 'dagu', 'start', 'mem{rows}.yaml'])\n"
            "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    done = subprocess.run([sys.executable, "-c", code], cwd=env.dir, env=env.env, capture_output=True, text=True)
    code_, rss = done.stdout.split()
    assert code_ == "0", done.stderr
    return int(rss)


def test_memory_stays_flat_when_the_result_is_large(env: Env, pg: Postgres) -> None:
    small = _peak_rss_kib(env, 10, pg)
    big = _peak_rss_kib(env, 300000, pg)  # ~14 MB of CSV; held in memory it would be ~60 MB of objects
    assert sum(1 for _ in open(env.dir / "big300000.csv")) == 300000
    assert big - small < 20 * 1024, (small, big)
