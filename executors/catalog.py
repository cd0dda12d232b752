"""The one list of step types this build runs: name, aliases, kind, module and `with:` schema.

Why one explicit table: the compiler and the engine used to keep two lists
that disagreed (24 names compiled, 5 ran), so a workflow could pass `dagu
validate --strict` and fail at its third step after two had had their side
effects.  Now the compiler reads this table: a type that is not here is a
located compile error, and the day an executor lands its line here makes the
type valid everywhere at once.

This module imports nothing but the standard library and has no side effects:
the compiler reads it without loading any executor, and PyInstaller sees every
executor module because build/dagu.spec collects all of `dagu.*`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

PROCESS = "process"  # the executor says which processes to start; the supervisor runs them
IN_PROCESS = "in_process"  # the executor runs on a worker thread of the supervisor (http, sql, ...)


@dataclass(frozen=True)
class StepType:
    """One catalogue line.

    `reads`: the step keys the type uses besides the common ones (depends, env,
    retry_policy, ...); a key outside it that only some types read (`command`,
    `script`, `call`, `routes`, `value`) is a compile error on a step of this
    type, because the run would silently ignore it.
    `config_schema`: JSON Schema of the step's `with:` (or `config:`) block,
    checked at compile time with errors at file:line:col.  Fields marked
    `"x-secret": true` are masked wherever the run records them.
    """

    name: str
    kind: str
    module: str
    aliases: tuple[str, ...] = ()
    reads: frozenset[str] = frozenset()
    config_schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "object", "additionalProperties": False})
    summary: str = ""
    dag_defaults: str | None = None  # the DAG-level key whose block gives this type's defaults (smtp, ssh, ...)


def secret_fields(schema: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Paths of the fields marked `"x-secret": true` in a `with:` schema (nested objects included),
    so the engine can mask their rendered values wherever the run writes."""
    found: list[tuple[str, ...]] = []
    for key, sub in (schema.get("properties") or {}).items():
        if not isinstance(sub, Mapping):
            continue
        if sub.get("x-secret"):
            found.append(prefix + (key,))
        elif sub.get("properties"):
            found.extend(secret_fields(sub, prefix + (key,)))
    return found


# Keys that only some step types read; every other step key is common to all types.
TYPE_SPECIFIC_KEYS = frozenset({"command", "script", "shell", "call", "params", "parallel", "routes", "value"})

_EMPTY_CONFIG: Mapping[str, Any] = {"type": "object", "additionalProperties": False}

_STR: Mapping[str, Any] = {"type": "string"}
_INT: Mapping[str, Any] = {"type": "integer"}
_BOOL: Mapping[str, Any] = {"type": "boolean"}
_STRS: Mapping[str, Any] = {"type": "array", "items": {"type": "string"}}
_ANY: Mapping[str, Any] = {}
_SCALAR: Mapping[str, Any] = {"type": ["string", "number", "integer", "boolean"]}

# A redis command in upstream's named-field shape (a step's own, or one item of `pipeline:`).
_REDIS_COMMAND: dict[str, Any] = {
    "command": _STR, "key": _STR, "keys": _STRS, "value": _SCALAR, "values": {"type": "array", "items": _SCALAR},
    "field": _STR, "fields": {"type": "object", "additionalProperties": _SCALAR},
    "args": {"type": "array", "items": _SCALAR}, "ttl": _INT, "nx": _BOOL, "xx": _BOOL, "keep_ttl": _BOOL,
    "count": _INT, "match": _STR, "position": {"enum": ["BEFORE", "AFTER"]}, "pivot": _STR, "start": _INT,
    "stop": _INT, "score": {"type": "number"}, "min": _STR, "max": _STR, "with_scores": _BOOL, "channel": _STR,
    "message": _SCALAR, "stream": _STR, "stream_id": _STR, "group": _STR, "consumer": _STR,
    "stream_fields": {"type": "object", "additionalProperties": _SCALAR}, "max_len": _INT, "block": _INT,
    "no_ack": _BOOL,
}
REDIS_SCHEMA: Mapping[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {
        # the connection (also the DAG-level redis: block)
        "url": _STR, "host": _STR, "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "password": {"type": "string", "x-secret": True}, "username": _STR,
        "db": {"type": "integer", "minimum": 0}, "tls": _BOOL, "tls_cert": _STR, "tls_key": _STR, "tls_ca": _STR,
        "tls_skip_verify": _BOOL, "mode": {"enum": ["standalone", "sentinel", "cluster"]},
        "sentinel_master": _STR, "sentinel_addrs": _STRS, "cluster_addrs": _STRS,
        "max_retries": {"type": "integer", "minimum": 0}, "timeout": {"type": "integer", "minimum": 0},
        # what to run
        **_REDIS_COMMAND,
        "script": _STR, "script_file": _STR, "script_sha": _STR, "script_keys": _STRS,
        "script_args": {"type": "array", "items": _SCALAR},
        "pipeline": {"type": "array", "items": {"type": "object", "additionalProperties": False,
                                                "required": ["command"], "properties": _REDIS_COMMAND}},
        "watch": _STRS, "multi": _BOOL,
        "lock": _STR, "lock_timeout": _INT, "lock_retry": _INT, "lock_wait": _INT,
        # the reply
        "output_format": {"enum": ["json", "jsonl", "raw", "csv"]}, "null_value": _STR,
        "max_result_size": {"type": "integer", "minimum": 1},
    },
}

S3_SCHEMA: Mapping[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {
        # the connection (also the DAG-level s3: block)
        "region": _STR, "endpoint": _STR, "access_key_id": _STR,
        "secret_access_key": {"type": "string", "x-secret": True},
        "session_token": {"type": "string", "x-secret": True}, "profile": _STR, "force_path_style": _BOOL,
        "disable_ssl": _BOOL, "bucket": _STR,
        # the object(s)
        "key": _STR, "source": _STR, "destination": _STR, "source_bucket": _STR, "source_key": _STR,
        "content_type": _STR,
        "storage_class": {"enum": ["STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA",
                                   "INTELLIGENT_TIERING", "GLACIER", "DEEP_ARCHIVE", "GLACIER_IR"]},
        "metadata": {"type": "object", "additionalProperties": _STR},
        "sse": {"enum": ["AES256", "aws:kms"]}, "sse_kms_key_id": _STR,
        "acl": {"enum": ["private", "public-read", "public-read-write", "authenticated-read", "aws-exec-read",
                         "bucket-owner-read", "bucket-owner-full-control"]},
        "tags": {"type": "object", "additionalProperties": _STR},
        "part_size": {"type": "integer", "minimum": 5}, "concurrency": {"type": "integer", "minimum": 1},
        "max_bandwidth": {"type": "integer", "minimum": 1},
        "prefix": _STR, "delimiter": _STR, "max_keys": {"type": "integer", "minimum": 1}, "recursive": _BOOL,
        "output_format": {"enum": ["json", "jsonl"]}, "quiet": _BOOL,
    },
}

CATALOGUE: tuple[StepType, ...] = (
    StepType("command", PROCESS, "dagu.executors.command", aliases=("shell",),
             reads=frozenset({"command", "script", "shell"}),
             summary="run a command line, a list of commands or a script in a shell"),
    StepType("call", PROCESS, "dagu.executors.call", aliases=("dag", "subworkflow", "parallel"),
             reads=frozenset({"call", "params", "parallel"}),
             summary="run another DAG of the plan as a sub-run, once or once per parallel item"),
    StepType("router", IN_PROCESS, "dagu.executors.router", reads=frozenset({"routes", "value"}),
             summary="choose which dependent steps run from a value matched against patterns"),
    StepType("noop", IN_PROCESS, "dagu.executors.noop",
             summary="do nothing and succeed (a join point, or a step that only waits for approval)"),
    StepType("redis", IN_PROCESS, "dagu.executors.redis", dag_defaults="redis", config_schema=REDIS_SCHEMA,
             summary="run a Redis command, a Lua script or a pipeline; the reply is the output"),
    StepType("s3", IN_PROCESS, "dagu.executors.s3", dag_defaults="s3", reads=frozenset({"command"}),
             config_schema=S3_SCHEMA,
             summary="upload, download, list, delete or copy S3 objects (AWS or an S3-compatible endpoint)"),
)

# DAG-level keys that give a step type its defaults (a catalogue line's `dag_defaults`).
TYPE_DEFAULT_KEYS = tuple(sorted({e.dag_defaults for e in CATALOGUE if e.dag_defaults}))

# Types of the Dagu v2 format that this build has no executor for yet.  They are
# recognised (so the error says "not supported by this build", not "unknown") and
# refused at compile time.
FORMAT_ONLY_TYPES = frozenset({
    "ssh", "sftp", "http", "docker", "container", "kubernetes", "k8s", "jq", "mail", "postgres", "sqlite",
    "archive", "gha", "github_action", "github-action", "chat", "agent", "harness", "template",
})


def by_name() -> dict[str, StepType]:
    """Every name and alias -> its catalogue line (a fresh dict: callers may not share state)."""
    out: dict[str, StepType] = {}
    for entry in CATALOGUE:
        out[entry.name] = entry
        for alias in entry.aliases:
            out[alias] = entry
    return out


def lookup(name: str) -> StepType | None:
    """The catalogue line of a type name or alias (case-insensitive), or None."""
    return by_name().get(name.strip().lower())


def runnable_names() -> list[str]:
    """The canonical names this build runs, for error messages."""
    return sorted(entry.name for entry in CATALOGUE)
