"""The `sqlite` step: run a query or a script against a SQLite database file (stdlib `sqlite3`).

One transaction per step (`transaction: false` runs each statement on its own, for scripts that
manage their own or for VACUUM): committed when every statement succeeded, rolled back on an
error, a timeout or a stop (`Connection.interrupt` ends a running statement at once).  Rows are
fetched in batches and streamed to the log (and `output_file`) as JSON lines, a JSON array or CSV.
"""

from __future__ import annotations

import json
import os
from typing import Any

from dagu.executors.base import Cancellation, StepIO, StepRequest, StepResult
from dagu.executors.sql_common import OutputOptions, RowWriter, SqlInputError, batches, bind, split_statements, \
    sql_text
from dagu.executors.sql_import import ImportSpec, run_import


def _target(dsn: str, cwd: str) -> tuple[str, bool, str]:
    """(what to connect to, whether it is a URI, what to call it in messages)."""
    if dsn == ":memory:":
        return dsn, False, dsn
    if dsn.startswith("file:"):
        rest = dsn[5:]
        path, _, query = rest.partition("?")
        if path and not path.startswith("/") and path != ":memory:":
            path = os.path.join(cwd, path)
        return "file:" + path + (f"?{query}" if query else ""), True, path or dsn
    path = os.path.join(cwd, os.path.expanduser(dsn))
    return path, False, path


def run(request: StepRequest, io: StepIO, cancel: Cancellation) -> StepResult:
    import sqlite3

    config = request.config
    target, uri, name = _target(str(config.get("dsn") or ""), request.cwd)
    try:
        sql = sql_text(request, optional=bool(config.get("import")))
        statements = split_statements(sql, False, sqlite3.complete_statement)
        spec = ImportSpec.from_config(config["import"], request.cwd) if config.get("import") else None
        options = OutputOptions.from_config(config, request.cwd)
    except SqlInputError as exc:
        return StepResult(exit_code=1, error=f"sqlite {name}: {exc}")
    params: Any = config.get("params")
    transaction = bool(config.get("transaction", True))
    busy = float(config.get("timeout") or 5)
    try:
        conn = sqlite3.connect(target, uri=uri, timeout=busy, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        return StepResult(exit_code=1, error=f"sqlite {name}: cannot open the database ({exc}); "
                                             "does its directory exist and is it writable?")
    cancel.on_cancel(conn.interrupt)  # ends the running statement; the transaction is rolled back below
    writer: RowWriter | None = None
    output: str | None = None
    done = 0
    try:
        writer = RowWriter(options, io.out)
        if transaction:
            conn.execute("BEGIN EXCLUSIVE" if config.get("file_lock") else "BEGIN IMMEDIATE"
                         if spec is not None or any(_writes(s) for s in statements) else "BEGIN")
        if spec is not None:
            summary = run_import(spec, "sqlite", conn.executemany, cancel.is_set, lambda t: io.err.write(f"sqlite {t}\n"))
            if not statements:
                output = json.dumps(summary)
                io.out.write(output + "\n")
        for statement in statements:
            if cancel.is_set():
                raise sqlite3.OperationalError("interrupted")
            query, values = bind(statement, params, "sqlite", False)
            cursor = conn.execute(query, values)
            if cursor.description is not None:
                columns = [d[0] for d in cursor.description]
                count = writer.result_set(columns, batches(cursor.fetchmany, cancel.is_set))
                io.err.write(f"sqlite: {count} row(s)\n")
            elif cursor.rowcount >= 0:
                io.err.write(f"sqlite: {cursor.rowcount} row(s) affected\n")
            cursor.close()
            done += 1
            if cancel.is_set():
                raise sqlite3.OperationalError("interrupted")
        if transaction:
            conn.execute("COMMIT")
    except SqlInputError as exc:
        _rollback(conn, transaction, io)
        return StepResult(exit_code=1, error=f"sqlite {name}: statement {done + 1}: {exc}")
    except sqlite3.Error as exc:
        _rollback(conn, transaction, io)
        if cancel.is_set():
            return StepResult(exit_code=1, error=f"sqlite {name}: stopped during statement {done + 1}; "
                                                 "the transaction was rolled back" if transaction else
                                                 f"sqlite {name}: stopped during statement {done + 1}")
        return StepResult(exit_code=1, error=f"sqlite {name}: statement {done + 1} failed: {exc}"
                                             + ("; the transaction was rolled back" if transaction else ""))
    except OSError as exc:
        _rollback(conn, transaction, io)
        return StepResult(exit_code=1, error=f"sqlite: output file {options.output_file}: {exc.strerror or exc}")
    finally:
        if writer is not None:
            writer.close()
        conn.close()
    if writer.truncated:
        io.err.write(f"sqlite: stopped at max_rows ({options.max_rows}); later rows were not read\n")
    return StepResult(exit_code=0, output=output)


def _writes(statement: str) -> bool:
    head = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else ""
    return head not in ("SELECT", "WITH", "EXPLAIN", "PRAGMA", "VALUES")


def _rollback(conn: Any, transaction: bool, io: StepIO) -> None:
    if not transaction:
        return
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
            io.err.write("sqlite: rolled back\n")
    except Exception:
        pass  # the connection is closed next, which rolls back too
