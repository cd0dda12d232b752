"""The `postgres` step: run a query or a script on a PostgreSQL server (psycopg 3).

One transaction per step (`transaction: false`: each statement commits on its own), committed
when every statement succeeded and rolled back on an error, a timeout or a stop.  A stop or a
timeout cancels the running statement on the server (libpq's cancel request), so a long query
does not keep running after the step ended.  A query's rows come from a server-side cursor, fetched
in batches: a 10-million-row result is written to the log (and `output_file`) as it arrives and
never sits in memory.  The DSN is marked secret (it often holds a password); prefer
`password:` from `${SECRET}`.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from dagu.executors.base import Cancellation, StepIO, StepRequest, StepResult
from dagu.executors.sql_common import BATCH_ROWS, OutputOptions, RowWriter, SqlInputError, batches, bind, \
    split_statements, sql_text
from dagu.executors.sql_import import ImportSpec, run_import

CONNECT_TIMEOUT_SEC = 10
ISOLATION = {"read_committed": "READ_COMMITTED", "repeatable_read": "REPEATABLE_READ",
             "serializable": "SERIALIZABLE"}


def _where(dsn: str, config: dict[str, Any]) -> str:
    from psycopg.conninfo import conninfo_to_dict

    try:
        info = conninfo_to_dict(dsn)
    except Exception:
        return "postgres (unparsable dsn)"
    host = str(info.get("host") or info.get("hostaddr") or "localhost")
    port = str(info.get("port") or 5432)
    return f"{host}:{port}" + (f"/{info['dbname']}" if info.get("dbname") else "")


def connect_error(where: str, exc: BaseException) -> str:
    """A failed connection as `host:port: what; hint`, from libpq's message."""
    text = str(exc).strip()
    low = text.lower()
    if "connection refused" in low:
        return f"{where}: connection refused; is PostgreSQL running and listening on that port?"
    if "could not translate host name" in low or "name or service not known" in low:
        return f"{where}: DNS lookup failed; check the host in dsn"
    if "password authentication failed" in low or "no password supplied" in low or \
            "authentication failed" in low:
        user = text.split('user "', 1)[1].split('"', 1)[0] if 'user "' in text else "the user"
        return f"{where}: authentication failed for {user}; check the user in dsn and password"
    if "ssl" in low or "certificate" in low:
        return f"{where}: TLS failed ({_first_line(text)}); check sslmode/sslrootcert in dsn"
    if "timeout expired" in low:
        return f"{where}: connection timed out; is the host reachable?"
    if "does not exist" in low:
        return f"{where}: {_first_line(text)}; check dbname and user in dsn"
    return f"{where}: cannot connect ({_first_line(text)})"


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else text


def _statement_error(exc: BaseException) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) or _first_line(str(exc))
    state = getattr(exc, "sqlstate", None)
    return primary + (f" (SQLSTATE {state})" if state else "")


def run(request: StepRequest, io: StepIO, cancel: Cancellation) -> StepResult:
    import psycopg

    config = request.config
    dsn = str(config.get("dsn") or "")
    where = _where(dsn, config)
    try:
        statements = split_statements(sql_text(request, optional=bool(config.get("import"))), True)
        spec = ImportSpec.from_config(config["import"], request.cwd) if config.get("import") else None
        options = OutputOptions.from_config(config, request.cwd)
    except SqlInputError as exc:
        return StepResult(exit_code=1, error=f"postgres {where}: {exc}")
    kwargs: dict[str, Any] = {}
    if config.get("password"):
        kwargs["password"] = str(config["password"])
    if "connect_timeout" not in dsn:
        kwargs["connect_timeout"] = CONNECT_TIMEOUT_SEC
    if "application_name" not in dsn:  # what pg_stat_activity shows: which run's step holds this session
        kwargs["application_name"] = f"dagu {request.dag_name}/{request.step_id}"[:63]
    transaction = bool(config.get("transaction", True))
    try:
        conn = psycopg.connect(dsn, autocommit=not transaction, **kwargs)
    except psycopg.Error as exc:
        return StepResult(exit_code=1, error="postgres " + connect_error(where, exc))
    if cancel.is_set():
        conn.close()
        return StepResult(exit_code=1, error=f"postgres {where}: stopped before the first statement")
    cancel.on_cancel(lambda: _cancel_on_server(conn))
    io.err.write(f"postgres: connected to {where} as {conn.info.user}\n")
    params = config.get("params")
    writer: RowWriter | None = None
    output: str | None = None
    done = 0
    try:
        level = str(config.get("isolation_level") or "default")
        if transaction and level in ISOLATION:
            conn.isolation_level = getattr(psycopg.IsolationLevel, ISOLATION[level])
        if config.get("timeout"):
            conn.execute("SELECT set_config('statement_timeout', %s, false)", (f"{int(config['timeout'])}s",))
        if config.get("advisory_lock"):
            lock = "pg_advisory_xact_lock" if transaction else "pg_advisory_lock"
            io.err.write(f"postgres: waiting for advisory lock {config['advisory_lock']!r}\n")
            conn.execute(f"SELECT {lock}(hashtext(%s))", (str(config["advisory_lock"]),))
        if spec is not None:
            def insert(sql: str, rows: list) -> None:
                with conn.cursor() as cur:
                    cur.executemany(sql, rows)
            summary = run_import(spec, "psycopg", insert, cancel.is_set, lambda t: io.err.write(f"postgres {t}\n"))
            if not statements:
                output = json.dumps(summary)
                io.out.write(output + "\n")
        writer = RowWriter(options, io.out)
        for statement in statements:
            if cancel.is_set():
                break
            query, values = bind(statement, params, "psycopg", True)
            _execute(conn, query, values, writer, io, cancel)
            done += 1
        if cancel.is_set():
            raise psycopg.errors.QueryCanceled("canceled by a stop or timeout")
        if transaction:
            conn.commit()
    except SqlInputError as exc:
        _rollback(conn, transaction, io)
        return StepResult(exit_code=1, error=f"postgres {where}: statement {done + 1}: {exc}")
    except psycopg.Error as exc:
        _rollback(conn, transaction, io)
        rolled = "; the transaction was rolled back" if transaction else ""
        if cancel.is_set():
            return StepResult(exit_code=1, error=f"postgres {where}: statement {done + 1} was cancelled on the "
                                                 f"server (stop or timeout){rolled}")
        if isinstance(exc, psycopg.OperationalError) and conn.broken:
            return StepResult(exit_code=1, error=f"postgres {where}: the connection was lost during statement "
                                                 f"{done + 1} ({_first_line(str(exc))}){rolled}")
        return StepResult(exit_code=1, error=f"postgres {where}: statement {done + 1} failed: "
                                             f"{_statement_error(exc)}{rolled}")
    except OSError as exc:
        _rollback(conn, transaction, io)
        return StepResult(exit_code=1, error=f"postgres: output file {options.output_file}: {exc.strerror or exc}")
    finally:
        if writer is not None:
            writer.close()
        try:
            conn.close()
        except Exception:
            pass
    if writer is not None and writer.truncated:
        io.err.write(f"postgres: stopped at max_rows ({options.max_rows}); later rows were not read\n")
    return StepResult(exit_code=0, output=output)


ROW_STATEMENTS = ("SELECT", "WITH", "VALUES", "TABLE")


def _first_word(statement: str) -> str:
    from dagu.executors.sql_common import _without_comments

    text = _without_comments(statement).lstrip(" \t\r\n(")
    return text.split(None, 1)[0].upper() if text else ""


def _execute(conn: Any, query: str, values: Any, writer: RowWriter, io: StepIO, cancel: Cancellation) -> None:
    """One statement.  A query (SELECT, WITH, VALUES, TABLE) runs in a server-side cursor whose
    rows are fetched BATCH_ROWS at a time, so a huge result never sits in memory; anything else
    (INSERT ... RETURNING included) runs on a client cursor."""
    if _first_word(query) in ROW_STATEMENTS:
        if conn.autocommit:  # a server-side cursor lives in a transaction
            with conn.transaction():
                _fetch_server_side(conn, query, values, writer, io, cancel)
        else:
            _fetch_server_side(conn, query, values, writer, io, cancel)
        return
    with conn.cursor() as cur:
        cur.execute(query, values)
        if cur.description is not None:
            count = writer.result_set([d.name for d in cur.description], batches(cur.fetchmany, cancel.is_set))
            io.err.write(f"postgres: {count} row(s)\n")
        elif cur.rowcount is not None and cur.rowcount >= 0:
            io.err.write(f"postgres: {cur.statusmessage or ''} ({cur.rowcount} row(s) affected)\n")
        else:
            io.err.write(f"postgres: {cur.statusmessage or 'done'}\n")


def _fetch_server_side(conn: Any, query: str, values: Any, writer: RowWriter, io: StepIO,
                       cancel: Cancellation) -> None:
    with conn.cursor(name="dagu_step_rows") as cur:
        cur.itersize = BATCH_ROWS
        cur.execute(query, values)
        columns = [d.name for d in cur.description] if cur.description else []
        count = writer.result_set(columns, batches(cur.fetchmany, cancel.is_set))
        io.err.write(f"postgres: {count} row(s)\n")


def _cancel_on_server(conn: Any) -> None:
    """Ask the server to cancel the running statement, off the engine's thread (it is a network call)."""
    def cancel() -> None:
        try:
            if hasattr(conn, "cancel_safe"):
                conn.cancel_safe(timeout=5.0)
            else:
                conn.cancel()
        except Exception:
            pass
    threading.Thread(target=cancel, name="pg-cancel", daemon=True).start()


def _rollback(conn: Any, transaction: bool, io: StepIO) -> None:
    if not transaction:
        return
    try:
        if not conn.broken:
            conn.rollback()
            io.err.write("postgres: rolled back\n")
    except Exception:
        pass  # closing the connection rolls back on the server too
