"""`import:` of the sqlite and postgres steps (upstream's `sqlite.import` / `postgres.import`):
load a CSV, TSV or JSON-lines file into a table, in batches, inside the step's transaction.

Why streamed: the file is read row by row and inserted `batch_size` rows at a time, so a
multi-gigabyte file never sits in memory.  Values are bound like every other value; the table
and column names cannot be parameters, so they are quoted as identifiers (`"a""b"`), never pasted
raw.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import field
from typing import Any, Callable, Iterator, Mapping

from dagu.spec.records import dataclass
from dagu.executors.sql_common import SqlInputError

DEFAULT_NULLS = ("", "NULL", "null", "\\N")


@dataclass
class ImportSpec:
    path: str
    table: str
    format: str
    has_header: bool = True
    delimiter: str = ","
    columns: list[str] = field(default_factory=list)
    null_values: tuple[str, ...] = DEFAULT_NULLS
    batch_size: int = 1000
    on_conflict: str = "error"
    conflict_target: str = ""
    update_columns: list[str] = field(default_factory=list)
    skip_rows: int = 0
    max_rows: int = 0
    dry_run: bool = False

    @classmethod
    def from_config(cls, block: Mapping[str, Any], cwd: str) -> "ImportSpec":
        path = os.path.join(cwd, str(block.get("input_file") or ""))
        fmt = str(block.get("format") or "")
        if not fmt:
            ext = os.path.splitext(path)[1].lower()
            fmt = {".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}.get(ext, "csv")
        has_header = block.get("has_header")
        nulls = block.get("null_values")
        return cls(path=path, table=str(block.get("table") or ""), format=fmt,
                   has_header=True if has_header is None else bool(has_header),
                   delimiter=str(block.get("delimiter") or ("\t" if fmt == "tsv" else ",")),
                   columns=[str(c) for c in block.get("columns") or ()],
                   null_values=tuple(str(v) for v in nulls) if nulls is not None else DEFAULT_NULLS,
                   batch_size=int(block.get("batch_size") or 1000),
                   on_conflict=str(block.get("on_conflict") or "error"),
                   conflict_target=str(block.get("conflict_target") or ""),
                   update_columns=[str(c) for c in block.get("update_columns") or ()],
                   skip_rows=int(block.get("skip_rows") or 0), max_rows=int(block.get("max_rows") or 0),
                   dry_run=bool(block.get("dry_run", False)))


def quote_ident(name: str) -> str:
    """A (possibly schema-qualified) table or column name as quoted identifiers."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))


def _rows(spec: ImportSpec) -> tuple[list[str], Iterator[list[Any]]]:
    """The columns and the rows of the input file (read lazily)."""
    fh = open(spec.path, newline="", encoding="utf-8")
    if spec.format == "jsonl":
        def objects() -> Iterator[dict[str, Any]]:
            with fh:
                for number, line in enumerate(fh, 1):
                    if line.strip():
                        try:
                            value = json.loads(line)
                        except ValueError as exc:
                            raise SqlInputError(f"{spec.path}:{number}: not JSON ({exc})") from None
                        if not isinstance(value, dict):
                            raise SqlInputError(f"{spec.path}:{number}: a JSON line must be an object")
                        yield value
        items = objects()
        first = next(items, None)
        columns = spec.columns or (list(first) if first else [])

        def values() -> Iterator[list[Any]]:
            for obj in ([first] if first is not None else []):
                yield [_json_value(obj.get(c)) for c in columns]
            for obj in items:
                yield [_json_value(obj.get(c)) for c in columns]
        return columns, values()
    reader = csv.reader(fh, delimiter=spec.delimiter)
    header = next(reader, None) if spec.has_header else None
    columns = spec.columns or (header or [])
    if not columns:
        fh.close()
        raise SqlInputError(f"{spec.path}: no columns: give import.columns or a header line")

    def cells() -> Iterator[list[Any]]:
        with fh:
            for row in reader:
                yield [None if cell in spec.null_values else cell for cell in row]
    return columns, cells()


def _json_value(value: Any) -> Any:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else value


def insert_sql(spec: ImportSpec, columns: list[str], style: str) -> str:
    """The INSERT for one row in the driver's style ("sqlite": `?`, "psycopg": `%s`)."""
    names = ", ".join(quote_ident(c) for c in columns)
    marks = ", ".join(["?" if style == "sqlite" else "%s"] * len(columns))
    table = quote_ident(spec.table)
    if style == "sqlite":
        verb = {"ignore": "INSERT OR IGNORE", "replace": "INSERT OR REPLACE"}.get(spec.on_conflict, "INSERT")
        return f"{verb} INTO {table} ({names}) VALUES ({marks})"
    sql = f"INSERT INTO {table} ({names}) VALUES ({marks})"
    target = ", ".join(quote_ident(c.strip()) for c in spec.conflict_target.split(",") if c.strip())
    if spec.on_conflict == "ignore":
        sql += f" ON CONFLICT{f' ({target})' if target else ''} DO NOTHING"
    elif spec.on_conflict == "replace":
        if not target:
            raise SqlInputError("import.on_conflict: replace needs import.conflict_target on PostgreSQL")
        keys = {c.strip() for c in spec.conflict_target.split(",")}
        update = spec.update_columns or [c for c in columns if c not in keys]
        sets = ", ".join(f"{quote_ident(c)} = EXCLUDED.{quote_ident(c)}" for c in update)
        sql += f" ON CONFLICT ({target}) " + (f"DO UPDATE SET {sets}" if sets else "DO NOTHING")
    return sql


def run_import(spec: ImportSpec, style: str, executemany: Callable[[str, list[list[Any]]], None],
               should_stop: Callable[[], bool], log: Callable[[str], None]) -> dict[str, Any]:
    """Insert the file's rows in batches; returns {table, rows_imported, rows_skipped, dry_run}."""
    if not spec.table:
        raise SqlInputError("import.table is required")
    try:
        columns, rows = _rows(spec)
    except OSError as exc:
        raise SqlInputError(f"import.input_file {spec.path}: {exc.strerror or exc}") from None
    sql = insert_sql(spec, columns, style)
    imported = skipped = 0
    batch: list[list[Any]] = []
    try:
        for row in rows:
            if should_stop():
                raise SqlInputError("stopped during the import")
            if skipped < spec.skip_rows:
                skipped += 1
                continue
            if spec.max_rows and imported + len(batch) >= spec.max_rows:
                break
            if len(row) != len(columns):
                raise SqlInputError(f"{spec.path}: a row has {len(row)} value(s) for {len(columns)} column(s) "
                                    f"(row {imported + len(batch) + skipped + 1} after the header)")
            batch.append(row)
            if len(batch) >= spec.batch_size:
                if not spec.dry_run:
                    executemany(sql, batch)
                imported += len(batch)
                batch = []
        if batch:
            if not spec.dry_run:
                executemany(sql, batch)
            imported += len(batch)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise SqlInputError(f"{spec.path}: cannot be read as {spec.format} ({exc})") from None
    log(f"import: {imported} row(s) {'checked (dry run)' if spec.dry_run else 'into ' + spec.table}"
        + (f", {skipped} skipped" if skipped else ""))
    return {"table": spec.table, "rows_imported": imported, "rows_skipped": skipped, "dry_run": spec.dry_run}
