"""What the sqlite and postgres steps share: the SQL text, statement splitting, parameter binding,
and streaming result rows as JSON lines, a JSON array or CSV.

Why here: both steps take upstream's keys (`dsn`, `params`, `output_format`, `headers`,
`null_string`, `max_rows`, `output_file`, `streaming`, `transaction`) and must behave the same.
Values are always bound by the driver, never pasted into the SQL: `:name` placeholders (upstream's
spelling) become the driver's own (`:name` for sqlite3, `%(name)s` for psycopg), found by a scanner
that skips string literals, quoted names, comments, dollar-quoted bodies and `::` casts.
"""

from __future__ import annotations

import base64
import csv
import datetime
import decimal
import json
import os
import uuid
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, TextIO

from dagu.spec.records import dataclass
from dagu.executors.base import StepRequest

FORMATS = ("jsonl", "json", "csv")
BATCH_ROWS = 1000


class SqlInputError(Exception):
    """The step's SQL or params cannot be used as given (a missing param, no SQL)."""


def sql_text(request: StepRequest, optional: bool = False) -> str:
    """The step's SQL: its `command:` lines, or its `script:`, or `with: query` ("" when
    `optional`, i.e. the step imports a file, and none is given)."""
    parts = [c for c in request.command if c.strip()]
    if request.script is not None and request.script.strip():
        parts.append(request.script)
    if not parts and isinstance(request.config.get("query"), str):
        parts.append(request.config["query"])
    if not parts:
        if optional:
            return ""
        raise SqlInputError("no SQL: give the query as command:, script: or with: query (or with: import)")
    return "\n;\n".join(parts) if len(parts) > 1 else parts[0]


def _scan(sql: str, dollar_quotes: bool) -> Iterator[tuple[int, str]]:
    """(position, kind) of the characters that matter outside literals and comments:
    kind is ';' for a statement end, ':' for a named placeholder start, '$' for `$N`."""
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"`":
            end = sql.find(c, i + 1)
            while end != -1 and end + 1 < n and sql[end + 1] == c:  # '' inside a literal
                end = sql.find(c, end + 2)
            i = n if end == -1 else end + 1
            continue
        if c == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end == -1 else end + 1
            continue
        if c == "/" and sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end == -1 else end + 2
            continue
        if c == "$" and dollar_quotes:
            j = i + 1
            while j < n and (sql[j].isalnum() or sql[j] == "_") and not sql[i + 1].isdigit():
                j += 1
            if j < n and sql[j] == "$" and not sql[i + 1:j].isdigit():
                tag = sql[i:j + 1]
                end = sql.find(tag, j + 1)
                i = n if end == -1 else end + len(tag)
                continue
            if i + 1 < n and sql[i + 1].isdigit():
                yield i, "$"
        if c == ":":
            if sql.startswith("::", i):
                i += 2
                continue
            if i + 1 < n and (sql[i + 1].isalpha() or sql[i + 1] == "_"):
                yield i, ":"
        if c == ";":
            yield i, ";"
        i += 1


def split_statements(sql: str, dollar_quotes: bool, complete: Callable[[str], bool] | None = None) -> list[str]:
    """The script's statements (without empty ones).  `complete` (sqlite3.complete_statement)
    keeps a trigger body's inner `;` inside its CREATE TRIGGER."""
    out: list[str] = []
    start = 0
    for pos, kind in _scan(sql, dollar_quotes):
        if kind != ";":
            continue
        piece = sql[start:pos + 1]
        if complete is not None and not complete(piece):
            continue
        out.append(piece)
        start = pos + 1
    out.append(sql[start:])
    return [s.strip() for s in out if _has_code(s)]


def _has_code(statement: str) -> bool:
    """False for an empty piece or one that is only comments (a trailing `-- done`)."""
    return _without_comments(statement).strip(" \t\r\n;") != ""


def _without_comments(sql: str) -> str:
    out, i, n = [], 0, len(sql)
    while i < n:
        if sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end == -1 else end + 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end == -1 else end + 2
        elif sql[i] in "'\"":
            end = sql.find(sql[i], i + 1)
            end = n if end == -1 else end + 1
            out.append(sql[i:end])
            i = end
        else:
            out.append(sql[i])
            i += 1
    return "".join(out)


def _name_at(sql: str, pos: int) -> str:
    j = pos + 1
    while j < len(sql) and (sql[j].isalnum() or sql[j] == "_"):
        j += 1
    return sql[pos + 1:j]


def bind(statement: str, params: Any, style: str, dollar_quotes: bool) -> tuple[str, Any]:
    """The statement in the driver's placeholder style and the values to bind.

    `style` is "sqlite" (named `:name` and positional `?` kept as they are) or "psycopg"
    (`:name` -> `%(name)s`, `$N` -> `%s`, every literal `%` doubled).  A `:name` missing from
    `params` is an SqlInputError naming it."""
    if params is None:
        if style == "psycopg":
            return statement, None
        return statement, ()
    marks = list(_scan(statement, dollar_quotes))
    if isinstance(params, Mapping):
        names = [_name_at(statement, p) for p, k in marks if k == ":"]
        missing = sorted({n for n in names if n not in params})
        if missing:
            raise SqlInputError(f"parameter(s) {', '.join(':' + m for m in missing)} not in params "
                                f"(given: {', '.join(sorted(params)) or 'none'})")
        used = {n: params[n] for n in names}
        if style == "sqlite":
            return statement, used
        out, last = [], 0
        for pos, kind in marks:
            if kind != ":":
                continue
            name = _name_at(statement, pos)
            out.append(statement[last:pos].replace("%", "%%"))
            out.append(f"%({name})s")
            last = pos + 1 + len(name)
        out.append(statement[last:].replace("%", "%%"))
        return "".join(out), used
    if isinstance(params, (list, tuple)):
        if style == "sqlite":
            return statement, tuple(params)
        dollars = [(p, k) for p, k in marks if k == "$"]
        if not dollars:
            return statement.replace("%", "%%").replace("%%s", "%s"), tuple(params)
        out, last, values = [], 0, []
        for pos, _kind in dollars:
            j = pos + 1
            while j < len(statement) and statement[j].isdigit():
                j += 1
            index = int(statement[pos + 1:j])
            if not 1 <= index <= len(params):
                raise SqlInputError(f"${index} has no value: params has {len(params)}")
            out.append(statement[last:pos].replace("%", "%%"))
            out.append("%s")
            values.append(params[index - 1])
            last = j
        out.append(statement[last:].replace("%", "%%"))
        return "".join(out), tuple(values)
    raise SqlInputError("params must be a mapping (for :name) or a list (for positional placeholders)")


def _jsonable(value: Any) -> Any:
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() and abs(value) < 2 ** 53 else float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (uuid.UUID, datetime.timedelta)):
        return str(value)
    return str(value)


def _csv_value(value: Any, null: str) -> Any:
    if value is None:
        return null
    if isinstance(value, (str, int, float)):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=_jsonable, ensure_ascii=False)
    return _jsonable(value)


@dataclass
class OutputOptions:
    format: str = "jsonl"
    headers: bool = False
    null_string: str = "null"
    max_rows: int = 0
    output_file: str | None = None
    streaming: bool = False  # with output_file: rows go to the file only, not the log

    @classmethod
    def from_config(cls, config: Mapping[str, Any], cwd: str) -> "OutputOptions":
        path = config.get("output_file")
        return cls(format=str(config.get("output_format") or "jsonl"), headers=bool(config.get("headers", False)),
                   null_string=str(config.get("null_string", "null")), max_rows=int(config.get("max_rows") or 0),
                   output_file=os.path.join(cwd, str(path)) if path else None,
                   streaming=bool(config.get("streaming", False)))


class RowWriter:
    """Writes result rows to the step's log and/or the output file as they are fetched."""

    def __init__(self, options: OutputOptions, log: TextIO) -> None:
        self.options = options
        self.sinks: list[TextIO] = []
        self._file: TextIO | None = None
        if options.output_file:
            parent = os.path.dirname(options.output_file)
            if parent:
                os.makedirs(parent, exist_ok=True)
            self._file = open(options.output_file, "w", encoding="utf-8", newline="")
            self.sinks.append(self._file)
        if not (options.streaming and self._file is not None):
            self.sinks.append(log)
        self.rows = 0
        self.truncated = False
        self._json_open = False

    def result_set(self, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        """Stream one statement's rows; returns how many were written (max_rows counts all sets)."""
        fmt = self.options.format
        writers = [csv.writer(s, lineterminator="\n") for s in self.sinks] if fmt == "csv" else []
        if fmt == "csv" and self.options.headers:
            for w in writers:
                w.writerow(columns)
        written = 0
        for row in rows:
            if self.options.max_rows and self.rows >= self.options.max_rows:
                self.truncated = True
                break
            if fmt == "csv":
                values = [_csv_value(v, self.options.null_string) for v in row]
                for w in writers:
                    w.writerow(values)
            else:
                text = json.dumps(dict(zip(columns, row)), default=_jsonable, ensure_ascii=False)
                if fmt == "json":
                    text = ("[" if not self._json_open else ",\n") + text
                    self._json_open = True
                else:
                    text += "\n"
                for sink in self.sinks:
                    sink.write(text)
            self.rows += 1
            written += 1
        return written

    def close(self) -> None:
        if self.options.format == "json":
            for sink in self.sinks:
                sink.write(("]" if self._json_open else "[]") + "\n")
        for sink in self.sinks:
            sink.flush()
        if self._file is not None:
            self._file.close()


def batches(fetchmany: Callable[[int], Sequence[Any]], should_stop: Callable[[], bool]) -> Iterator[Any]:
    """Rows fetched BATCH_ROWS at a time, never the whole result at once."""
    while not should_stop():
        chunk = fetchmany(BATCH_ROWS)
        if not chunk:
            return
        yield from chunk
