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

from dataclasses import field
from collections.abc import Mapping

from dagu.spec.records import dataclass

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any

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
    check: str | None = None  # "module:function" the compiler calls with the step (see StepProblem)
    braced_only: bool = False  # in its script and with: text only `${...}` is dagu's; `$x` and backticks
    # are literal (a Go template's own `{{ $x }}` variables, Markdown code spans)


@dataclass(frozen=True)
class StepProblem:
    """What a catalogue line's `check` function finds wrong in a step that its schema cannot see
    (a jq filter that does not compile, a template construct outside the supported subset).

    The compiler reports it as `invalid-format` at `rel` (a place inside the step, e.g.
    ("with", "filter")), at `offset` characters into that string value when given.  The function
    is called as `check(step) -> list[StepProblem]` with the step's keys after `action:` rewriting;
    it must not raise, and must skip values that hold `${...}` it cannot know before the run.
    """

    rel: tuple[Any, ...]
    what: str  # "jq filter", "template"
    detail: str
    offset: int | None = None
    length: int = 1


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

_WORDS: Mapping[str, Any] = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
_ENV: Mapping[str, Any] = {"anyOf": [
    {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean", "null"]}},
    {"type": "array", "items": {"anyOf": [{"type": "string", "pattern": "^[^=]+="}, {"type": "object"}]}}]}
_PULL: Mapping[str, Any] = {"anyOf": [{"enum": ["always", "missing", "never", "fallback"]}, {"type": "boolean"}]}
# docker: upstream's step keys, plus the DAG-level container: spellings (merged under with:).
DOCKER_SCHEMA: Mapping[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "image": {"type": "string"}, "container_name": {"type": "string"}, "name": {"type": "string"},
        "exec": {"anyOf": [{"type": "string"}, {"type": "object", "additionalProperties": False, "properties": {
            "user": {"type": "string"}, "working_dir": {"type": "string"}, "env": _ENV}}]},
        "platform": {"type": "string"}, "pull": _PULL, "pull_policy": _PULL,
        "auto_remove": {"type": "boolean"}, "keep_container": {"type": "boolean"},
        "working_dir": {"type": "string"}, "user": {"type": "string"},
        "volumes": {"type": "array", "items": {"type": "string"}}, "env": _ENV,
        "network": {"anyOf": [{"type": "string"}, {"type": "object"}]},
        "entrypoint": _WORDS, "command": _WORDS, "shell": _WORDS,
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "host": {"anyOf": [{"type": "string"}, {"type": "object"}]},
        "container": {"type": "object"},
        "stop_timeout": {"type": "integer", "minimum": 0},
    }}
_K8S_MAP: Mapping[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}
# kubernetes: upstream's keys (snake_case; nested Kubernetes objects in snake_case too).
KUBERNETES_SCHEMA: Mapping[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["image"],
    "properties": {
        "image": {"type": "string"}, "namespace": {"type": "string"}, "kubeconfig": {"type": "string"},
        "context": {"type": "string"}, "service_account": {"type": "string"}, "working_dir": {"type": "string"},
        "image_pull_policy": {"enum": ["Always", "IfNotPresent", "Never"]},
        "image_pull_secrets": {"type": "array", "items": {"type": "string"}},
        "env": _ENV, "env_from": {"type": "array", "items": {"type": "object"}},
        "command": _WORDS, "args": {"type": "array", "items": {"type": "string"}}, "shell": _WORDS,
        "resources": {"type": "object", "additionalProperties": False,
                      "properties": {"requests": _K8S_MAP, "limits": _K8S_MAP}},
        "node_selector": _K8S_MAP,
        "tolerations": {"type": "array", "items": {"type": "object", "additionalProperties": False, "properties": {
            "key": {"type": "string"}, "operator": {"enum": ["Exists", "Equal"]}, "value": {"type": "string"},
            "effect": {"type": "string"}, "toleration_seconds": {"type": "integer"}}}},
        "security_context": {"type": "object"}, "pod_security_context": {"type": "object"},
        "affinity": {"type": "object"}, "termination_grace_period_seconds": {"type": "integer", "minimum": 0},
        "priority_class_name": {"type": "string"}, "labels": _K8S_MAP, "annotations": _K8S_MAP,
        "volumes": {"type": "array", "items": {"type": "object"}},
        "volume_mounts": {"type": "array", "items": {"type": "object"}},
        "active_deadline": {"type": "integer", "minimum": 1}, "backoff_limit": {"type": "integer", "minimum": 0},
        "ttl_after_finished": {"type": "integer", "minimum": 0},
        "cleanup_policy": {"enum": ["delete", "keep"]}, "pod_failure_policy": {"type": "object"},
        "poll_interval": {"type": "number", "exclusiveMinimum": 0},
    }}
_ADDRESSES: Mapping[str, Any] = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
_MAIL_SCHEMA: Mapping[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["from", "to"],
    "properties": {
        "from": {"type": "string"}, "to": _ADDRESSES, "cc": _ADDRESSES, "bcc": _ADDRESSES,
        "subject": {"type": "string"}, "message": {"type": "string"}, "html": {"type": "string"},
        "attachments": {"type": "array", "items": {"type": "string"}},
        # the server: usually from the DAG's smtp: block
        "host": {"type": "string"}, "port": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
        "username": {"type": "string"}, "password": {"type": "string", "x-secret": True},
        "tls": {"enum": ["auto", "starttls", "ssl", "none"]}, "ca_file": {"type": "string"},
        "timeout": {"type": "integer", "minimum": 1},
    }}
_SQL_IMPORT: Mapping[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["input_file", "table"],
    "properties": {
        "input_file": {"type": "string"}, "table": {"type": "string"},
        "format": {"enum": ["csv", "tsv", "jsonl"]}, "has_header": {"type": "boolean"},
        "delimiter": {"type": "string"}, "columns": {"type": "array", "items": {"type": "string"}},
        "null_values": {"type": "array", "items": {"type": "string"}},
        "batch_size": {"type": "integer", "minimum": 1},
        "on_conflict": {"enum": ["error", "ignore", "replace"]}, "conflict_target": {"type": "string"},
        "update_columns": {"type": "array", "items": {"type": "string"}},
        "skip_rows": {"type": "integer", "minimum": 0}, "max_rows": {"type": "integer", "minimum": 0},
        "dry_run": {"type": "boolean"},
    }}
_SQL_COMMON: Mapping[str, Any] = {
    "import": _SQL_IMPORT,
    "dsn": {"type": "string"},
    "query": {"type": "string"},
    "params": {"anyOf": [{"type": "object"}, {"type": "array"}]},
    "timeout": {"type": "integer", "minimum": 0},
    "transaction": {"type": "boolean"},
    "output_format": {"enum": ["jsonl", "json", "csv"]},
    "headers": {"type": "boolean"},
    "null_string": {"type": "string"},
    "max_rows": {"type": "integer", "minimum": 0},
    "streaming": {"type": "boolean"},
    "output_file": {"type": "string"},
}
_SQLITE_SCHEMA: Mapping[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["dsn"],
    "properties": {**_SQL_COMMON, "file_lock": {"type": "boolean"}}}
_POSTGRES_SCHEMA: Mapping[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["dsn"],
    "properties": {**_SQL_COMMON, "dsn": {"type": "string", "x-secret": True},
                   "password": {"type": "string", "x-secret": True},
                   "isolation_level": {"enum": ["default", "read_committed", "repeatable_read", "serializable"]},
                   "advisory_lock": {"type": "string"}}}
_SCALAR = {"type": ["string", "number", "boolean"]}
_HTTP_SCHEMA: Mapping[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "method": {"type": "string", "description": "GET, POST, ... (or give `command: METHOD URL`)"},
        "url": {"type": "string"},
        "timeout": {"type": "number", "minimum": 0, "description": "seconds for connecting and for each read"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "query": {"type": "object", "additionalProperties": _SCALAR},
        "body": {"type": ["string", "object", "array"], "description": "text, or an object/array sent as JSON"},
        "form": {"type": "object", "additionalProperties": _SCALAR},
        "files": {"type": "object", "additionalProperties": {"type": "string"},
                  "description": "multipart field -> local file path"},
        "form_encoding": {"enum": ["multipart", "urlencoded"]},
        "expected_status": {"oneOf": [{"type": "integer"}, {"type": "array", "items": {"type": "integer"}}]},
        "max_redirects": {"type": "integer", "minimum": 0, "description": "0: do not follow redirects"},
        "skip_tls_verify": {"type": "boolean"},
        "ca_bundle": {"type": "string", "description": "a PEM file of the CAs to trust"},
        "token": {"type": "string", "x-secret": True, "description": "sent as Authorization: Bearer"},
        "username": {"type": "string"},
        "password": {"type": "string", "x-secret": True, "description": "HTTP basic auth with username"},
        "format": {"enum": ["text", "json"]},
        "json": {"type": "boolean", "description": "same as format: json"},
        "silent": {"type": "boolean"},
        "debug": {"type": "boolean"},
        "output": {"type": "string", "description": "a file to write the body to"},
    }}
_JQ_SCHEMA: Mapping[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "filter": {"type": "string", "description": "the jq program (or give it as `command:`)"},
        "data": {"description": "inline JSON input (or give it as `script:`)"},
        "input": {"type": "string", "description": "a JSON file to read"},
        "raw": {"type": "boolean", "description": "strings without quotes (jq -r)"},
        "compact": {"type": "boolean", "description": "one line per result (jq -c)"},
    }}
_TEMPLATE_SCHEMA: Mapping[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "template": {"type": "string", "description": "the template text (or give it as `script:`)"},
        "data": {"type": "object", "description": "the values the template reads as {{ .name }}"},
        "output": {"type": "string", "description": "a file to write the rendered text to"},
    }}
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
# ssh and sftp: the connection keys of the DAG-level `ssh:` block (merged under the step's with:).
_PORT = {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 65535}, {"type": "string"}]}
_DURATION = {"anyOf": [{"type": "string", "pattern": r"^\s*([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h|d)?\s*)+$"},
                       {"type": "integer", "minimum": 0}]}
_SSH_CONNECTION: dict[str, Any] = {
    "host": {"type": "string"}, "port": _PORT, "user": {"type": "string"}, "key": {"type": "string"},
    "password": {"type": "string", "x-secret": True}, "strict_host_key": {"type": "boolean"},
    "known_host_file": {"type": "string"}, "timeout": _DURATION,
    "bastion": {"type": "object", "additionalProperties": False, "properties": {
        "host": {"type": "string"}, "port": _PORT, "user": {"type": "string"}, "key": {"type": "string"},
        "password": {"type": "string", "x-secret": True}}},
}
_SHELL = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
SSH_SCHEMA: Mapping[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["host"],
    "properties": {**_SSH_CONNECTION, "shell": _SHELL, "shell_args": {"type": "array", "items": {"type": "string"}},
                   "dir": {"type": "string"}}}
SFTP_SCHEMA: Mapping[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["host", "source", "destination"],
    "properties": {**_SSH_CONNECTION, "direction": {"enum": ["upload", "download"]},
                   "source": {"type": "string"}, "destination": {"type": "string"},
                   "overwrite": {"type": "boolean"}}}

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

    StepType("docker", IN_PROCESS, "dagu.executors.docker", aliases=("container",),
             reads=frozenset({"command", "script", "shell"}), config_schema=DOCKER_SCHEMA, dag_defaults="container",
             summary="run the step in a new container, or exec it in a running one (Docker Engine API)"),
    StepType("kubernetes", IN_PROCESS, "dagu.executors.kubernetes", aliases=("k8s",),
             reads=frozenset({"command", "script", "shell"}), config_schema=KUBERNETES_SCHEMA,
             dag_defaults="kubernetes", summary="run the step as a Kubernetes Job and stream its pod's log"),
    StepType("mail", IN_PROCESS, "dagu.executors.mail", dag_defaults="smtp",
             config_schema=_MAIL_SCHEMA, summary="send an e-mail over SMTP (text/HTML, to/cc/bcc, attachments)"),
    StepType("sqlite", IN_PROCESS, "dagu.executors.sqlite", reads=frozenset({"command", "script"}),
             config_schema=_SQLITE_SCHEMA, summary="run SQL on a SQLite file; rows as JSON lines or CSV"),
    StepType("postgres", IN_PROCESS, "dagu.executors.postgres", aliases=("postgresql",),
             reads=frozenset({"command", "script"}), config_schema=_POSTGRES_SCHEMA,
             summary="run SQL on PostgreSQL; rows streamed as JSON lines or CSV"),
    StepType("http", IN_PROCESS, "dagu.executors.http", reads=frozenset({"command"}),
             config_schema=_HTTP_SCHEMA, summary="send an HTTP request; the response body (or "
             "{status_code, headers, body, json}) is the output"),
    StepType("jq", IN_PROCESS, "dagu.executors.jq", reads=frozenset({"command", "script"}),
             config_schema=_JQ_SCHEMA, check="dagu.executors.jq:check_step",
             summary="run a jq filter over JSON from an earlier output, a file or inline data"),
    StepType("template", IN_PROCESS, "dagu.executors.template", reads=frozenset({"script"}),
             config_schema=_TEMPLATE_SCHEMA, check="dagu.executors.template:check_step", braced_only=True,
             summary="render a Go-style template with data to a file or the output"),
    StepType("redis", IN_PROCESS, "dagu.executors.redis", dag_defaults="redis", config_schema=REDIS_SCHEMA,
             summary="run a Redis command, a Lua script or a pipeline; the reply is the output"),
    StepType("s3", IN_PROCESS, "dagu.executors.s3", dag_defaults="s3", reads=frozenset({"command"}),
             config_schema=S3_SCHEMA,
             summary="upload, download, list, delete or copy S3 objects (AWS or an S3-compatible endpoint)"),
    StepType("ssh", IN_PROCESS, "dagu.executors.ssh", reads=frozenset({"command", "script", "shell"}),
             config_schema=SSH_SCHEMA, dag_defaults="ssh",
             summary="run a command or a script on a remote host over SSH"),
    StepType("sftp", IN_PROCESS, "dagu.executors.sftp", config_schema=SFTP_SCHEMA, dag_defaults="ssh",
             summary="upload or download files and directories over SFTP"),
)

# DAG-level keys that give a step type its defaults (a catalogue line's `dag_defaults`).
TYPE_DEFAULT_KEYS = tuple(sorted({e.dag_defaults for e in CATALOGUE if e.dag_defaults}))

# Types of the Dagu v2 format that this build has no executor for yet.  They are
# recognised (so the error says "not supported by this build", not "unknown") and
# refused at compile time.
FORMAT_ONLY_TYPES = frozenset({
    "archive", "gha", "github_action", "github-action", "chat", "agent", "harness",
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
