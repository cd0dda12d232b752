"""The step types the format knows, and how a step's type is decided.

A step names its type with `type:`; without one, its keys decide (`call` makes
a sub-DAG step, anything else runs a command).  The list is the whole v2
surface, not only what runs today: a workflow that uses a type this build
cannot run yet still compiles, and the runtime says which type is missing.
"""

from __future__ import annotations

from typing import Any

# Upstream's names for the same type, mapped to the one the plan uses.
ALIASES = {"dag": "call", "subworkflow": "call", "shell": "command", "k8s": "kubernetes",
           "hitl": "approval", "wait": "approval", "github_action": "gha", "github-action": "gha"}

KNOWN_TYPES = frozenset({
    "command", "call", "parallel", "router", "ssh", "sftp", "http", "docker", "container",
    "kubernetes", "jq", "mail", "postgres", "sqlite", "redis", "s3", "archive", "gha",
    "approval", "chat", "agent", "harness", "template", "noop", *ALIASES,
})


def step_type(raw: dict[str, Any]) -> str:
    """The plan type of a step: its explicit type, else what its keys imply."""
    declared = raw.get("type")
    if isinstance(declared, str) and declared:
        name = declared.strip().lower()
        return ALIASES.get(name, name)
    if "call" in raw:
        return "call"
    if "routes" in raw:
        return "router"
    return "command"
