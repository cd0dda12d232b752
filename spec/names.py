"""The names dagu uses as path components: run ids, DAG names, queue names.

A run lives at `$DAGU_HOME/runs/<dag>/<run_id>/` and a queued run's entry under
`$DAGU_HOME/queue/<queue>/`, so each of these names is a path component, and a
name that is `..`, holds a `/` or a NUL, or starts with a dot would put files
outside the data dir or hide them from listings.  One function checks each
kind of name, and every path is built through it: the store (runs, queues,
logs), the front ends, and the compiler (`name:` and `queue:` at their line).

Standard library only, and nothing of ours: the compiler and the store both
import it, and neither may import the other.
"""

from __future__ import annotations

import re

DAG_NAME_MAX = 40
QUEUE_NAME_MAX = DAG_NAME_MAX  # a DAG's queue defaults to its name
RUN_ID_MAX = 128

_DAG_CHARS = "A-Za-z0-9_.-"
_RUN_ID_CHARS = "A-Za-z0-9_.:-"

DAG_NAME_RULE = (f"use at most {DAG_NAME_MAX} letters, digits, '_', '.' or '-', "
                 "not starting with '.' and without '..'")
QUEUE_NAME_RULE = DAG_NAME_RULE
RUN_ID_RULE = (f"use at most {RUN_ID_MAX} letters, digits, '_', '.', ':' or '-', "
               "not starting with '.' or '-' and without '..'")


class BadName(ValueError):
    """A run id, DAG name or queue name that cannot be used as a path component.

    The message names the kind, the value and the rule; front ends show it as is
    (a usage error: nothing was read or written)."""


def _problem(value: object, chars: str, limit: int) -> str | None:
    """Why `value` breaks the rule (characters from `chars`, a regex class), or None."""
    if not isinstance(value, str):
        return f"not a string ({type(value).__name__})"
    if not value:
        return "empty"
    if len(value) > limit:
        return f"{len(value)} characters, the limit is {limit}"
    if "\0" in value:
        return "it contains a NUL byte"
    if "/" in value or "\\" in value:
        return "it contains a path separator"
    if value.startswith("."):
        return "it starts with '.'"
    if ".." in value:
        return "it contains '..'"
    bad = sorted({c for c in value if not re.fullmatch(f"[{chars}]", c)})
    if bad:
        return ", ".join(repr(c) for c in bad) + " not allowed"
    return None


def dag_name_problem(value: object) -> str | None:
    """Why a DAG name is not allowed (for the compiler's located report), or None."""
    return _problem(value, _DAG_CHARS, DAG_NAME_MAX)


def queue_name_problem(value: object) -> str | None:
    """Why a queue name is not allowed, or None."""
    return _problem(value, _DAG_CHARS, QUEUE_NAME_MAX)


def run_id_problem(value: object) -> str | None:
    """Why a run id is not allowed, or None."""
    if isinstance(value, str) and value.startswith("-"):
        return "it starts with '-'"
    return _problem(value, _RUN_ID_CHARS, RUN_ID_MAX)


def check_dag_name(value: object) -> str:
    """The DAG name, or BadName naming the value and the rule."""
    problem = dag_name_problem(value)
    if problem:
        raise BadName(f"DAG name {value!r} is not allowed ({problem}): {DAG_NAME_RULE}")
    return value  # type: ignore[return-value]


def check_queue_name(value: object) -> str:
    """The queue name, or BadName naming the value and the rule."""
    problem = queue_name_problem(value)
    if problem:
        raise BadName(f"queue name {value!r} is not allowed ({problem}): {QUEUE_NAME_RULE}")
    return value  # type: ignore[return-value]


def check_run_id(value: object) -> str:
    """The run id, or BadName naming the value and the rule."""
    problem = run_id_problem(value)
    if problem:
        raise BadName(f"run id {value!r} is not allowed ({problem}): {RUN_ID_RULE}")
    return value  # type: ignore[return-value]
