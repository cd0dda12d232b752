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
    "http", "docker", "container", "kubernetes", "k8s", "jq", "mail", "postgres", "sqlite",
    "redis", "s3", "archive", "gha", "github_action", "github-action", "chat", "agent", "harness", "template",
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
