"""redis steps: one command, a Lua script, or a pipeline of commands, with the reply as the output.

Shape (upstream's): `command:` plus the named fields a command takes (`key`, `keys`, `value`,
`values`, `field`, `fields`, `ttl`, `start`/`stop`, ...), turned into the command's argument list
by `build_args`; `args:` appends raw arguments, so any command the table does not know still runs.
`script:`/`script_file:`/`script_sha:` run EVAL/EVALSHA with `script_keys`/`script_args`;
`pipeline:` sends a list of commands in one round trip (`multi: true` wraps them in MULTI/EXEC).

Why the reply is written to stdout and not returned as `output`: the engine then captures it
within the DAG's `max_output_size` and names that cap when it is exceeded, and the log shows it.
Scalars are written as text (GET's value, INCR's number), lists and hashes as JSON, so
`${step.output.field}` addresses a hash.  Log lines (what is sent where) go to stderr.

Why RESP3 with the client's reply callbacks removed: the server's own types come back (a map for
HGETALL, a set for SMEMBERS, "OK" for SET) instead of redis-py's per-command reshaping, so the
output is what `redis-cli` shows, for every command, including ones this module never heard of.

Cancellation: a stop or timeout disconnects the sockets (shutdown wakes a blocked read, and the
server drops a client blocked in BLPOP), and a running Lua script is ended with SCRIPT KILL from
a fresh connection.  Retries (`max_retries`) cover establishing the connection only: retrying a
command that may have run (INCR) would apply it twice.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from typing import Any, Iterator
from urllib.parse import urlsplit

from dagu.spec.records import dataclass
from dagu.executors.base import Cancellation, StepIO, StepRequest, StepResult

DEFAULT_TIMEOUT = 30
DEFAULT_MAX_RESULT = 10 * 1024 * 1024
SCAN_LIMIT = 100_000
_BLOCKING = frozenset({"BLPOP", "BRPOP", "BLMOVE", "BZPOPMIN", "BZPOPMAX", "BLMPOP", "BZMPOP", "XREAD",
                       "XREADGROUP", "WAIT", "BRPOPLPUSH"})
_UNLOCK = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class StepFailure(Exception):
    """A failure to report as the step's error (never a traceback)."""


@dataclass(frozen=True)
class Target:
    """Where the client connects, for messages: host:port (or a socket path) and database."""

    host: str
    port: int
    db: int
    tls: bool

    def __str__(self) -> str:
        return f"{self.host}:{self.port}" + (f" db {self.db}" if self.db else "")


def target_of(cfg: dict[str, Any]) -> Target:
    if cfg.get("url"):
        parts = urlsplit(str(cfg["url"]))
        path = parts.path.strip("/")
        db = int(path) if path.isdigit() else int(cfg.get("db") or 0)
        return Target(parts.hostname or "localhost", parts.port or 6379, db,
                      parts.scheme == "rediss" or bool(cfg.get("tls")))
    return Target(str(cfg.get("host") or "localhost"), int(cfg.get("port") or 6379), int(cfg.get("db") or 0),
                  bool(cfg.get("tls")))


def _listed(cfg: dict[str, Any], many: str, one: str) -> list[Any]:
    """`keys:` (or `values:`), else the single `key:` (or `value:`), as a list."""
    if cfg.get(many):
        return list(cfg[many])
    return [cfg[one]] if cfg.get(one) is not None else []


def _pairs(mapping: dict[str, Any] | None) -> list[Any]:
    out: list[Any] = []
    for name, value in (mapping or {}).items():
        out += [name, value]
    return out


def build_args(cfg: dict[str, Any], default_timeout: float) -> list[Any]:
    """The argument list (command words first) of a command given in upstream's named-field shape."""
    words = str(cfg["command"]).strip().upper().replace("_", " ").split()
    cmd = " ".join(words)
    key, value = cfg.get("key"), cfg.get("value")
    head: list[Any] = [key] if key is not None else []
    ttl = cfg.get("ttl")
    if cmd == "SET":
        args = head + [value]
        args += ["EX", ttl] if ttl else []
        args += ["KEEPTTL"] if cfg.get("keep_ttl") else []
        args += ["NX"] if cfg.get("nx") else ["XX"] if cfg.get("xx") else []
    elif cmd == "SETNX" and ttl:
        words, args = ["SET"], head + [value, "NX", "EX", ttl]
    elif cmd == "SETEX":
        args = head + [ttl or 0, value]
    elif cmd in ("EXPIRE", "PEXPIRE"):
        args = head + [ttl if ttl is not None else value]
    elif cmd == "MSET" or cmd == "MSETNX":
        args = _pairs(cfg.get("fields")) or list(cfg.get("values") or [])
    elif cmd in ("MGET", "DEL", "UNLINK", "EXISTS", "TOUCH", "SDIFF", "SINTER", "SUNION", "WATCH"):
        args = _listed(cfg, "keys", "key")
    elif cmd in ("HSET", "HMSET"):
        args = head + (_pairs(cfg.get("fields")) or [cfg.get("field"), value])
    elif cmd in ("HGET", "HEXISTS", "HSTRLEN"):
        args = head + [cfg.get("field")]
    elif cmd in ("HSETNX", "HINCRBY", "HINCRBYFLOAT"):
        args = head + [cfg.get("field"), value]
    elif cmd in ("HMGET", "HDEL"):
        args = head + ([cfg["field"]] if cfg.get("field") else []) + list(cfg.get("values") or cfg.get("keys") or [])
    elif cmd in ("LPUSH", "RPUSH", "LPUSHX", "RPUSHX", "SADD", "SREM", "ZREM", "PFADD"):
        args = head + _listed(cfg, "values", "value")
    elif cmd in ("LPOP", "RPOP", "SPOP", "SRANDMEMBER", "ZPOPMIN", "ZPOPMAX"):
        args = head + ([cfg["count"]] if cfg.get("count") else [])
    elif cmd in ("BLPOP", "BRPOP", "BZPOPMIN", "BZPOPMAX"):
        wait = cfg["block"] / 1000 if cfg.get("block") else default_timeout
        args = _listed(cfg, "keys", "key") + [wait]
    elif cmd in ("LRANGE", "LTRIM", "ZRANGE", "ZREVRANGE", "GETRANGE"):
        args = head + [cfg.get("start", 0), cfg.get("stop", -1)]
        args += ["WITHSCORES"] if cfg.get("with_scores") and cmd.startswith("Z") else []
    elif cmd in ("ZRANGEBYSCORE", "ZREVRANGEBYSCORE", "ZCOUNT"):
        low, high = cfg.get("min", "-inf"), cfg.get("max", "+inf")
        args = head + ([high, low] if cmd.startswith("ZREV") else [low, high])
        args += ["WITHSCORES"] if cfg.get("with_scores") and cmd != "ZCOUNT" else []
    elif cmd == "LINSERT":
        args = head + [cfg.get("position", "BEFORE"), cfg.get("pivot"), value]
    elif cmd == "LREM":
        args = head + [cfg.get("count", 0), value]
    elif cmd == "ZADD":
        args = head + (["NX"] if cfg.get("nx") else ["XX"] if cfg.get("xx") else [])
        if cfg.get("fields"):
            for member, score in cfg["fields"].items():
                args += [score, member]
        else:
            args += [cfg.get("score", 0), value]
    elif cmd == "ZINCRBY":
        args = head + [cfg.get("score", 1), value]
    elif cmd == "PUBLISH":
        args = [cfg.get("channel", key), cfg.get("message", value)]
    elif cmd == "KEYS":
        args = [cfg.get("match") or key or "*"]
    elif cmd == "XADD":
        args = [cfg.get("stream", key)] + (["MAXLEN", "~", cfg["max_len"]] if cfg.get("max_len") else [])
        args += [cfg.get("stream_id") or "*"] + _pairs(cfg.get("stream_fields") or cfg.get("fields"))
    elif cmd in ("XREAD", "XREADGROUP"):
        args = ["GROUP", cfg.get("group"), cfg.get("consumer")] if cmd == "XREADGROUP" else []
        args += ["COUNT", cfg["count"]] if cfg.get("count") else []
        args += ["BLOCK", cfg["block"]] if cfg.get("block") else []
        args += ["NOACK"] if cfg.get("no_ack") and cmd == "XREADGROUP" else []
        default_id = ">" if cmd == "XREADGROUP" else "0"
        args += ["STREAMS", cfg.get("stream", key), cfg.get("stream_id") or default_id]
    else:  # generic: key, keys, field, value, values in that order
        args = head + list(cfg.get("keys") or []) + ([cfg["field"]] if cfg.get("field") is not None else [])
        args += ([value] if value is not None else []) + list(cfg.get("values") or [])
    return words + [a for a in args if a is not None] + list(cfg.get("args") or [])


def plain(value: Any, null: str | None = None) -> Any:
    """A RESP3 reply as JSON-ready data: bytes as text, sets and tuples as lists, maps as objects."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(plain(k)): plain(v, null) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [plain(v, null) for v in value]
        return sorted(items, key=str) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, Exception):
        return {"error": str(value)}
    if value is None and null is not None:
        return null
    return value


def render(value: Any, fmt: str, null: str) -> Iterator[str]:
    """The reply as text chunks in the step's output format (streamed to stdout)."""
    data = plain(value)
    if fmt == "raw" or not isinstance(data, (list, dict)):
        if data is None:
            yield null
        elif isinstance(data, (list, dict)):
            yield json.dumps(data)
        elif isinstance(data, bool):
            yield "true" if data else "false"
        else:
            yield str(data)
        yield "\n"
    elif fmt == "jsonl":
        rows = data.items() if isinstance(data, dict) else data
        for row in rows:
            yield json.dumps(list(row) if isinstance(data, dict) else row) + "\n"
    elif fmt == "csv":
        import csv
        import io as _io

        rows = data.items() if isinstance(data, dict) else data
        for row in rows:
            buf = _io.StringIO()
            cells = list(row) if isinstance(row, (list, tuple)) else [row]
            csv.writer(buf).writerow([null if c is None else c for c in cells])
            yield buf.getvalue()
    else:
        yield from json.JSONEncoder().iterencode(data)
        yield "\n"


class CappedWriter:
    """Writes to the step's stdout until `limit` bytes, then refuses, naming the cap."""

    def __init__(self, out: Any, limit: int) -> None:
        self.out, self.limit, self.size = out, limit, 0

    def write(self, text: str) -> None:
        self.size += len(text.encode("utf-8", "replace"))
        if self.size > self.limit:
            raise StepFailure(f"the result is over max_result_size ({self.limit} bytes); raise max_result_size "
                              "or narrow the command (a range, a count, a match pattern)")
        self.out.write(text)


def connect(cfg: dict[str, Any], where: Target, cwd: str, socket_timeout: float | None) -> Any:
    """A client with redis-py's retries and reply callbacks off (see the module docstring)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    timeout = float(cfg.get("timeout") or DEFAULT_TIMEOUT)
    options: dict[str, Any] = dict(protocol=3, socket_timeout=socket_timeout, retry=Retry(NoBackoff(), 0),
                                   socket_connect_timeout=min(timeout, 10.0))
    if cfg.get("password"):
        options["password"] = cfg["password"]
    if cfg.get("username"):
        options["username"] = cfg["username"]
    if where.tls:
        options.update(ssl=True, ssl_cert_reqs="none" if cfg.get("tls_skip_verify") else "required",
                       ssl_check_hostname=not cfg.get("tls_skip_verify"))
        for key, option in (("tls_ca", "ssl_ca_certs"), ("tls_cert", "ssl_certfile"), ("tls_key", "ssl_keyfile")):
            if cfg.get(key):
                options[option] = os.path.join(cwd, str(cfg[key]))
    if cfg.get("url"):
        if cfg.get("db") is not None and not urlsplit(str(cfg["url"])).path.strip("/"):
            options["db"] = int(cfg["db"])
        options.pop("ssl", None) if str(cfg["url"]).startswith("rediss:") else None
        client = redis.Redis.from_url(str(cfg["url"]), **options)
    else:
        client = redis.Redis(host=where.host, port=where.port, db=where.db, **options)
    client.response_callbacks.clear()
    return client


def describe(exc: BaseException, where: Target, what: str) -> str:
    """A failure naming host:port, what failed and a hint (never a traceback)."""
    import ssl

    import redis

    text = str(exc).strip() or exc.__class__.__name__
    lowered = text.lower()
    if isinstance(exc, redis.AuthenticationError) or "wrongpass" in lowered or "noauth" in lowered \
            or "invalid password" in lowered or "invalid username-password" in lowered:
        return (f"redis {where}: authentication failed ({text.split(':')[0]}); "
                "check password/username (or the DAG's redis: block)")
    if isinstance(exc, ssl.SSLError) or "ssl" in lowered or "tls" in lowered or "certificate" in lowered \
            or (where.tls and what == "connecting" and isinstance(exc, (redis.ConnectionError, redis.TimeoutError))):
        return (f"redis {where}: TLS failed ({text}); check tls_ca / tls_skip_verify, "
                "and that the server speaks TLS on this port")
    if "name or service not known" in lowered or "nodename nor servname" in lowered \
            or "temporary failure in name resolution" in lowered or "no address associated" in lowered:
        return f"redis {where}: DNS lookup of {where.host} failed; check the host name"
    if isinstance(exc, redis.TimeoutError):
        return f"redis {where}: {what} timed out ({text}); raise `timeout` or check the server"
    if isinstance(exc, redis.ConnectionError):
        return f"redis {where}: connection failed ({text}); is the server up and the port right?"
    if isinstance(exc, redis.ResponseError):
        return f"redis {where}: {what} failed: {text}"
    return f"redis {where}: {what} failed ({exc.__class__.__name__}: {text})"


def open_client(cfg: dict[str, Any], where: Target, request: StepRequest, io: StepIO, cancel: Cancellation,
                socket_timeout: float | None) -> Any:
    """Connect (HELLO/AUTH included), retrying a refused or dropped connection `max_retries` times."""
    import redis

    retries = int(cfg.get("max_retries", 3) or 0)
    for attempt in range(retries + 1):
        client = connect(cfg, where, request.cwd, socket_timeout)
        try:
            client.connection_pool.release(client.connection_pool.get_connection())
            return client
        except redis.AuthenticationError as exc:
            raise StepFailure(describe(exc, where, "connecting")) from None
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            client.close()
            if attempt == retries or cancel.is_set() or "wrongpass" in str(exc).lower() or where.tls:
                raise StepFailure(describe(exc, where, "connecting")) from None
            io.err.write(f"redis {where}: connection failed, retrying ({attempt + 1}/{retries})\n")
            if cancel.wait(min(0.1 * 2 ** attempt, 2.0)):
                raise StepFailure(f"redis {where}: cancelled while connecting") from None
        except redis.ResponseError as exc:
            raise StepFailure(describe(exc, where, "connecting")) from None
    raise StepFailure(f"redis {where}: could not connect")  # not reached


def script_args(cfg: dict[str, Any], cwd: str) -> list[Any]:
    keys = list(cfg.get("script_keys") or cfg.get("keys") or [])
    argv = list(cfg.get("script_args") or cfg.get("args") or [])
    if cfg.get("script_sha"):
        return ["EVALSHA", cfg["script_sha"], len(keys), *keys, *argv]
    if cfg.get("script_file"):
        path = os.path.join(cwd, str(cfg["script_file"]))
        try:
            with open(path, encoding="utf-8") as fh:
                source = fh.read()
        except OSError as exc:
            raise StepFailure(f"redis: cannot read script_file {path}: {exc.strerror}") from None
    else:
        source = str(cfg["script"])
    return ["EVAL", source, len(keys), *keys, *argv]


def acquire_lock(client: Any, cfg: dict[str, Any], where: Target, io: StepIO, cancel: Cancellation) -> str:
    """Take the named lock (SET NX PX), retrying `lock_retry` times; the token frees only our lock."""
    token = uuid.uuid4().hex
    expiry_ms = int(cfg.get("lock_timeout", 30)) * 1000
    for attempt in range(int(cfg.get("lock_retry", 10)) + 1):
        if client.execute_command("SET", cfg["lock"], token, "NX", "PX", expiry_ms) is not None:
            io.err.write(f"redis {where}: lock {cfg['lock']} acquired\n")
            return token
        if cancel.wait(int(cfg.get("lock_wait", 100)) / 1000):
            break
    raise StepFailure(f"redis {where}: lock {cfg['lock']!r} is held by someone else; "
                      "raise lock_retry/lock_wait or check who holds it")


def execute(client: Any, cfg: dict[str, Any], request: StepRequest, io: StepIO, where: Target,
            default_timeout: float) -> Any:
    """Run the step's command, script or pipeline; the raw reply."""
    if cfg.get("pipeline"):
        pipe = client.pipeline(transaction=bool(cfg.get("multi") or cfg.get("watch")))
        if cfg.get("watch"):  # on the pipeline's own connection; EXEC fails if a watched key changed
            pipe.watch(*cfg["watch"])
            pipe.multi()
        names = []
        for item in cfg["pipeline"]:
            args = build_args(item, default_timeout)
            names.append(" ".join(str(a) for a in args[:2]))
            pipe.execute_command(*args)
        io.err.write(f"redis {where}: pipeline of {len(names)} command(s)"
                     f"{' in MULTI/EXEC' if cfg.get('multi') else ''}\n")
        replies = pipe.execute(raise_on_error=False)
        for index, reply in enumerate(replies):
            if isinstance(reply, Exception):
                raise StepFailure(f"redis {where}: pipeline command {index + 1} ({names[index]}) failed: {reply}")
        return list(replies)
    if cfg.get("script") or cfg.get("script_file") or cfg.get("script_sha"):
        args = script_args(cfg, request.cwd)
        io.err.write(f"redis {where}: {args[0]} with {args[2]} key(s)\n")
        return client.execute_command(*args)
    if not cfg.get("command"):
        raise StepFailure("redis: nothing to run: give command:, script:, script_file:, script_sha: or pipeline:")
    if str(cfg["command"]).strip().upper() == "SCAN":
        return scan(client, cfg)
    args = build_args(cfg, default_timeout)
    shown = args[0] + (f" {args[1]}" if len(args) > 1 and cfg.get("key") is not None else "")
    io.err.write(f"redis {where}: {shown}\n")
    return client.execute_command(*args)


def scan(client: Any, cfg: dict[str, Any]) -> list[Any]:
    """SCAN to the end (at most SCAN_LIMIT keys), so a keyspace never comes back in one reply."""
    found: list[Any] = []
    cursor: Any = 0
    while True:
        cursor, keys = client.execute_command("SCAN", cursor, "MATCH", cfg.get("match") or "*",
                                              "COUNT", cfg.get("count") or 100)
        found.extend(keys)
        if int(cursor) == 0 or len(found) >= SCAN_LIMIT:
            return found[:SCAN_LIMIT]


def run(request: StepRequest, io: StepIO, cancel: Cancellation) -> StepResult:
    import redis

    cfg = request.config
    where = target_of(cfg)
    mode = cfg.get("mode", "standalone")
    if mode != "standalone":
        return StepResult(exit_code=1, error=f"redis: mode {mode} is not supported by this build; "
                                             "connect to one server (url or host/port)")
    default_timeout = float(cfg.get("timeout") or DEFAULT_TIMEOUT)
    blocking = str(cfg.get("command") or "").strip().upper() in _BLOCKING
    socket_timeout = None if blocking else default_timeout  # a blocking command waits as long as it asks
    client = None
    scripting = bool(cfg.get("script") or cfg.get("script_file") or cfg.get("script_sha"))

    def interrupt() -> None:
        if scripting:  # end the script on the server, from a fresh connection
            threading.Thread(target=kill_script, args=(cfg, where, request.cwd), daemon=True).start()
        if client is not None:
            client.connection_pool.disconnect()

    token = None
    try:
        client = open_client(cfg, where, request, io, cancel, socket_timeout)
        cancel.on_cancel(interrupt)
        if cfg.get("lock"):
            token = acquire_lock(client, cfg, where, io, cancel)
        reply = execute(client, cfg, request, io, where, default_timeout)
        writer = CappedWriter(io.out, int(cfg.get("max_result_size") or DEFAULT_MAX_RESULT))
        for chunk in render(reply, str(cfg.get("output_format") or "json"), str(cfg.get("null_value", "null"))):
            writer.write(chunk)
        return StepResult(exit_code=0)
    except StepFailure as exc:
        return StepResult(exit_code=1, error=str(exc))
    except (redis.RedisError, OSError) as exc:
        if cancel.is_set():
            return StepResult(exit_code=1, error=f"redis {where}: cancelled (the connection was closed)")
        what = "pipeline" if cfg.get("pipeline") else "script" if scripting else str(cfg.get("command", "command"))
        return StepResult(exit_code=1, error=describe(exc, where, what.upper()))
    finally:
        if client is not None:
            if token is not None and not cancel.is_set():
                try:
                    client.execute_command("EVAL", _UNLOCK, 1, cfg["lock"], token)
                except (redis.RedisError, OSError):
                    pass
            client.close()


def kill_script(cfg: dict[str, Any], where: Target, cwd: str) -> None:
    """SCRIPT KILL from a new connection: a Lua script ignores its client going away."""
    import redis

    try:
        client = connect({**cfg, "timeout": 2}, where, cwd, 2.0)
        client.execute_command("SCRIPT", "KILL")
        client.close()
    except (redis.RedisError, OSError):
        pass
