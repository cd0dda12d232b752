"""The sqlite step against a real SQLite database file (the standard library's sqlite3)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.executors.conftest import Env

REPO = Path(__file__).resolve().parents[2]
EVIL = "'; DROP TABLE users; --"


def _db(env: Env) -> Path:
    path = env.dir / "app.db"
    with sqlite3.connect(path) as conn:
        conn.executescript("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, score REAL);"
                           "INSERT INTO users (name, score) VALUES ('ann', 1.5), ('bob', NULL);")
    conn.close()
    return path


def _run_dir(env: Env, dag: str) -> Path:
    [run_dir] = [p for p in (env.home / "runs" / dag).iterdir() if not p.name.startswith(".")]
    return run_dir


def _rows(path: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_params_are_bound_never_pasted_and_rows_stream_as_json_lines(env: Env) -> None:
    db = _db(env)
    env.write("q.yaml", f"""
        params:
          - NAME: "{EVIL}"
        steps:
          - id: insert
            type: sqlite
            with: {{dsn: app.db, params: {{name: "${{NAME}}", score: 2}}}}
            command: "INSERT INTO users (name, score) VALUES (:name, :score)"
          - id: one
            type: sqlite
            with: {{dsn: app.db, params: {{name: "${{NAME}}"}}}}
            command: "SELECT id, name, score FROM users WHERE name = :name"
            output: ONE
          - id: all
            type: sqlite
            with: {{dsn: app.db}}
            command: "SELECT name, score FROM users ORDER BY id"
          - id: use
            command: echo "id=${{ONE.id}} score=${{one.output.score}}"
            output: USE
        """)
    res = env.run("start", "q.yaml")
    assert res.returncode == 0, res.stderr
    assert _rows(db, "SELECT name FROM users ORDER BY id") == [("ann",), ("bob",), (EVIL,)]
    st = env.status("q")
    assert json.loads(st["steps"]["one"]["output"]) == {"id": 3, "name": EVIL, "score": 2}
    assert st["steps"]["use"]["output"] == "id=3 score=2.0"
    run_dir = _run_dir(env, "q")
    lines = (run_dir / "logs" / "all.1.out").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"name": "ann", "score": 1.5}, {"name": "bob", "score": None},
                                                    {"name": EVIL, "score": 2}]
    assert "3 row(s)" in (run_dir / "logs" / "all.1.err").read_text()


def test_a_script_is_one_transaction_rolled_back_when_a_statement_fails(env: Env) -> None:
    db = _db(env)
    env.write("tx.yaml", """
        steps:
          - id: script
            type: sqlite
            with: {dsn: app.db}
            script: |
              -- a comment; with a semicolon
              INSERT INTO users (name) VALUES ('carl; not a statement end');
              UPDATE users SET score = 9;
              INSERT INTO no_such_table VALUES (1);
        """)
    res = env.run("start", "tx.yaml")
    assert res.returncode != 0
    step = env.status("tx")["steps"]["script"]
    assert step["status"] == "failed"
    error = step["attempts"][-1]["error"]
    assert "statement 3 failed: no such table: no_such_table" in error and "rolled back" in error
    assert _rows(db, "SELECT name, score FROM users ORDER BY id") == [("ann", 1.5), ("bob", None)]
    assert "Traceback" not in res.stderr


def test_csv_with_headers_to_an_output_file_and_max_rows(env: Env) -> None:
    _db(env)
    env.write("csv.yaml", """
        steps:
          - id: export
            type: sqlite
            with: {dsn: "file:app.db?mode=ro", output_format: csv, headers: true, null_string: "NULL",
                   output_file: out/users.csv, streaming: true}
            command: "SELECT id, name, score FROM users ORDER BY id"
          - id: capped
            type: sqlite
            with: {dsn: app.db, max_rows: 1, output_format: json}
            command: "SELECT name FROM users ORDER BY id"
            output: FIRST
        """)
    res = env.run("start", "csv.yaml")
    assert res.returncode == 0, res.stderr
    assert (env.dir / "out" / "users.csv").read_text() == "id,name,score\n1,ann,1.5\n2,bob,NULL\n"
    run_dir = _run_dir(env, "csv")
    assert (run_dir / "logs" / "export.1.out").read_text() == ""  # streaming: the file only
    st = env.status("csv")
    assert json.loads(st["steps"]["capped"]["output"]) == [{"name": "ann"}]
    assert "max_rows (1)" in (run_dir / "logs" / "capped.1.err").read_text()


def test_output_over_max_output_size_fails_naming_the_cap(env: Env) -> None:
    _db(env)
    env.write("big.yaml", """
        max_output_size: 200
        steps:
          - id: big
            type: sqlite
            with: {dsn: ":memory:"}
            command: "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) SELECT i FROM n"
            output: BIG
        """)
    res = env.run("start", "big.yaml")
    assert res.returncode != 0
    step = env.status("big")["steps"]["big"]
    assert "max_output_size (200 bytes)" in step["attempts"][-1]["error"]
    run_dir = _run_dir(env, "big")
    assert len((run_dir / "logs" / "big.1.out").read_text().splitlines()) == 5000  # the log has it all


def test_a_timeout_interrupts_the_query_and_rolls_back(env: Env) -> None:
    db = _db(env)
    env.write("slow.yaml", """
        max_clean_up_time_sec: 2
        steps:
          - id: slow
            type: sqlite
            timeout_sec: 1
            with: {dsn: app.db}
            script: |
              DELETE FROM users;
              WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n;
        """)
    started = time.monotonic()
    res = env.run("start", "slow.yaml", timeout=60)
    assert res.returncode != 0
    assert time.monotonic() - started < 10
    step = env.status("slow")["steps"]["slow"]
    assert step["status"] == "failed" and "timed out" in step["attempts"][-1]["error"]
    run_dir = _run_dir(env, "slow")
    assert "rolled back" in (run_dir / "logs" / "slow.1.err").read_text()
    assert _rows(db, "SELECT count(*) FROM users") == [(2,)]  # the DELETE was rolled back


def test_retry_policy_and_failures_without_a_traceback(env: Env) -> None:
    env.write("bad.yaml", """
        type: graph
        steps:
          - id: nodir
            type: sqlite
            retry_policy: {limit: 1, interval_sec: 0}
            with: {dsn: no/such/dir/x.db}
            command: "SELECT 1"
          - id: missing_param
            type: sqlite
            with: {dsn: ":memory:", params: {a: 1}}
            command: "SELECT :a, :b"
        """)
    res = env.run("start", "bad.yaml")
    assert res.returncode != 0
    steps = env.status("bad")["steps"]
    assert len(steps["nodir"]["attempts"]) == 2
    assert "no/such/dir/x.db: cannot open the database" in steps["nodir"]["attempts"][-1]["error"]
    assert ":b not in params" in steps["missing_param"]["attempts"][-1]["error"]
    assert "Traceback" not in res.stderr + res.stdout


def test_compile_errors_are_located_and_compiling_imports_no_sqlite3(env: Env) -> None:
    path = env.write("typo.yaml", """
        steps:
          - id: q
            type: sqlite
            with:
              dsn: app.db
              output_format: xml
            command: SELECT 1
          - id: r
            type: sqlite
            with: {dns: app.db}
            command: SELECT 1
        """)
    res = env.run("compile", str(path), "-o", str(env.dir / "out"))
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "typo.yaml:7:" in out and "output_format" in out
    assert "typo.yaml:11:" in out and "did you mean 'dsn'" in out
    ok = env.write("ok.yaml", "steps:\n  - {id: q, type: sqlite, with: {dsn: a.db}, command: SELECT 1}\n")
    code = ("import sys; from dagu.cli import main\n"
            f"try:\n    main(['compile', {str(ok)!r}, '-o', {str(env.dir / 'out')!r}])\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "print(sorted(m for m in ('sqlite3', 'dagu.executors.sqlite') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=env.dir, env=env.env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_the_example_compiles(env: Env) -> None:
    res = env.run("compile", str(REPO / "examples" / "sqlite.yaml"), "-o", str(env.dir / "out"))
    assert res.returncode == 0, res.stdout + res.stderr


def test_import_loads_a_csv_file_in_batches_in_the_step_transaction(env: Env) -> None:
    db = _db(env)
    rows = "".join(f"{i},name{i},{i / 2}\n" for i in range(3, 2503))
    (env.dir / "users.csv").write_text("id,name,score\n1,dup,0\n" + rows + "9999,evil,NULL\n")
    (env.dir / "broken.csv").write_text("id,name,score\n7000,x,1\n7001,short\n")
    env.write("imp.yaml", """
        type: graph
        steps:
          - id: load
            action: sqlite.import
            with:
              dsn: app.db
              import: {input_file: users.csv, table: users, on_conflict: ignore, batch_size: 100}
            output: LOADED
          - id: broken
            type: sqlite
            with: {dsn: app.db, import: {input_file: broken.csv, table: users}}
        """)
    res = env.run("start", "imp.yaml")
    assert res.returncode != 0  # the broken file
    st = env.status("imp")
    assert json.loads(st["steps"]["load"]["output"]) == {"table": "users", "rows_imported": 2502, "rows_skipped": 0,
                                                         "dry_run": False}
    assert _rows(db, "SELECT name FROM users WHERE id = 1") == [("ann",)]  # ignored: the row existed
    assert _rows(db, "SELECT score FROM users WHERE id = 9999") == [(None,)]
    assert "a row has 2 value(s) for 3 column(s)" in st["steps"]["broken"]["attempts"][-1]["error"]
    assert _rows(db, "SELECT count(*) FROM users WHERE id >= 7000 AND id < 9999") == [(0,)]  # rolled back
