"""The step types a workflow may name, read from the executors' catalogue, and how a step's type is decided.

Why the catalogue (dagu.executors.catalog) and no list of our own: the
compiler and the engine used to keep two lists that disagreed, so a type
with no executor compiled, passed `validate --strict` and failed at run time
after earlier steps had had their side effects.  Now a name is one of:

- a catalogue entry or alias: this build runs it;
- an approval spelling (`hitl`, `approval`, `wait`): upstream's step that
  waits for a person's decision, compiled to a `noop` step carrying
  `options.approval`, so the engine's approval wait applies;
- a format-only name (catalog.FORMAT_ONLY_TYPES): part of the Dagu v2 format
  but without an executor here, refused as `unsupported-step-type`;
- anything else: `unknown-step-type`.

The catalogue module imports nothing, so reading it loads no executor.
"""

from __future__ import annotations

from collections.abc import Mapping

from dagu.executors.catalog import FORMAT_ONLY_TYPES, StepType, by_name
from dagu.executors.catalog import runnable_names as _catalogue_names

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any

# Upstream's human-in-the-loop step: waits for a decision, then succeeds (approve) or fails (reject).
APPROVAL_TYPES = frozenset({"hitl", "approval", "wait"})
APPROVAL = "approval"  # the one name the approval spellings are reported and planned under

# What an approval step's `with:` may hold: upstream's hitl config (prompt, input, required).
APPROVAL_CONFIG_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "prompt": {"type": "string", "description": "message shown to the approver"},
        "input": {"type": "array", "items": {"type": "string"},
                  "description": "names of the values the approver may enter"},
        "required": {"type": "array", "items": {"type": "string"},
                     "description": "names from input the approver must fill in"},
    },
}

# Upstream's other names of format-only types, so both spellings plan (and are refused) alike.
_FORMAT_ALIASES = {"k8s": "kubernetes", "github_action": "gha", "github-action": "gha"}

_BY_NAME = by_name()  # read once; catalogue lines are frozen


def entry(name: str) -> StepType | None:
    """The catalogue line of a canonical or alias type name, or None."""
    return _BY_NAME.get(name)


def runnable_names() -> list[str]:
    """The types this build runs (canonical names), for messages."""
    return _catalogue_names()


def is_supported(name: str) -> bool:
    return name in _BY_NAME or name in APPROVAL_TYPES


def is_known(name: str) -> bool:
    """Part of the format: runnable here, an approval spelling, or recognised but unsupported."""
    return is_supported(name) or name in FORMAT_ONLY_TYPES


def known_names() -> list[str]:
    """Every name a step may write as its type, for did-you-mean."""
    return sorted({*_BY_NAME, *APPROVAL_TYPES, *FORMAT_ONLY_TYPES})


def canonical(name: str) -> str:
    """The name the plan uses for a written type name (lower-cased, aliases resolved)."""
    name = name.strip().lower()
    line = _BY_NAME.get(name)
    if line is not None:
        return line.name
    if name in APPROVAL_TYPES:
        return APPROVAL
    return _FORMAT_ALIASES.get(name, name)


def step_type(raw: dict[str, Any]) -> str:
    """The type of a step: its explicit type, else what its keys imply."""
    declared = raw.get("type")
    if isinstance(declared, str) and declared:
        return canonical(declared)
    if "call" in raw:
        return "call"
    if "routes" in raw:
        return "router"
    return "command"
