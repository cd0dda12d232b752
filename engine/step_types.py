"""Find a step's executor through the catalogue (executors/catalog.py), loading it only when needed.

A type's module is imported the first time a step of that type runs, so a run
of commands never loads an HTTP or SQL client.  Before any step runs, the
supervisor asks `unsupported()` about the whole DAG: a plan compiled elsewhere
(or by an older build) may name a type this build has no executor for, and
refusing the run up front means no step has had side effects first.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from dagu.spec.records import dataclass
from dagu.executors import catalog
from dagu.spec.plan import Dag, Step

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any


@dataclass(frozen=True)
class Executor:
    """A loaded executor: a process one has `make_job(request)`, an in-process one `run(request, io, cancel)`."""

    name: str
    kind: str  # catalog.PROCESS | catalog.IN_PROCESS
    module: Any

    @property
    def in_process(self) -> bool:
        return self.kind == catalog.IN_PROCESS


ExecutorLookup = Callable[[str], "Executor | None"]


def type_of(step: Step) -> str:
    """The type a step runs as: a `call` makes a sub-DAG step and `routes` a router, whatever
    else the plan says (plans older than the catalogue spelled them so)."""
    if step.call is not None:
        return "call"
    if step.routes:
        return "router"
    return step.type


def load_executor(type_name: str) -> Executor | None:
    """The catalogue's executor for a type name or alias, imported now; None when there is none."""
    entry = catalog.lookup(type_name)
    if entry is None:
        return None
    return Executor(entry.name, entry.kind, importlib.import_module(entry.module))


def known(type_name: str) -> bool:
    """Whether this build runs the type (without importing its executor)."""
    return catalog.lookup(type_name) is not None


def unsupported(dag: Dag, runs: Callable[[str], bool] = known) -> list[str]:
    """One message per step or handler whose type this build does not run, located when the plan
    says where it is written: "dag.yaml:4:5: step 'x' has type 'http'"."""
    steps = [*[(s.id, s) for s in dag.steps], *[(f"handler_on.{h}", s) for h, s in dag.handlers.items()]]
    out = []
    for key, step in steps:
        if not runs(type_of(step)):
            where = f"{dag.source_map[key]}: " if key in dag.source_map else ""
            out.append(f"{where}step {step.name!r} has type {type_of(step)!r}")
    return out
