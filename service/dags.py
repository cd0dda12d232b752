"""DAGs as the front ends name them: a workflow file, a plan file, or a DAG name.

The service is the only layer below the front ends that may import the
compiler; it does so lazily, so reading runs never loads it.
"""

from __future__ import annotations

import os
import time
from dataclasses import field
from collections.abc import Mapping

from dagu.spec.records import dataclass
from dagu.service import BadRequest, ServiceError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from dagu.service.dag_index import DagIndex
    from dagu.spec.plan import Plan


@dataclass
class LoadedPlan:
    """A plan ready to run, or the diagnostics that stop it (rendered as the compiler prints them).

    `plan_text` is the plan file's own text when the input was a plan file (it is copied
    into the run as is); `diagnostics` may hold warnings next to a plan."""

    file: str
    plan: "Plan | None"
    diagnostics: str | None = None
    plan_text: str | None = None

    @property
    def ok(self) -> bool:
        return self.plan is not None


@dataclass
class DagEntry:
    """One DAG file of a directory: its name and plan, or why it does not compile."""

    name: str
    file: str
    plan: "Plan | None"
    diagnostics: list = field(default_factory=list)  # compiler Diagnostic objects


def load_for_run(file: str, home: str | None = None) -> LoadedPlan:
    """A plan from a plan file (*.json) or, compiling it first, from a workflow file.

    With `home`, a workflow's plan is reused from `$home/plans/cache` while the file and
    everything it was compiled from are unchanged (plan_cache.py): such a start imports
    neither the compiler nor YAML."""
    from dagu.spec.plan import PlanError, load_plan

    if file.endswith(".json"):
        try:
            plan = load_plan(file)
            with open(file, encoding="utf-8") as fh:
                text = fh.read()
        except (PlanError, OSError) as exc:
            raise BadRequest(str(exc)) from None
        return LoadedPlan(file, plan, None, text)
    if not os.path.exists(file):
        raise BadRequest(f"{file}: no such file")
    environ = os.environ  # what the compiler reads (DAGU_BASE_CONFIG), so what an entry is keyed on
    if home is not None:
        reused = _reuse(home, file, environ)
        if reused is not None:
            return reused
    started_ns = time.time_ns()
    from dagu.compiler.pipeline import compile_file
    from dagu.compiler.render import render

    result = compile_file(file)
    warnings = render("text", result.diagnostics, 1) if result.diagnostics else None
    if not result.ok:
        return LoadedPlan(file, None, warnings)
    text = None
    if home is not None:
        from dagu.service import plan_cache
        from dagu.spec.plan import dump_plan

        text = dump_plan(result.plan)
        plan_cache.save(home, file, environ, result.plan, text, warnings, started_ns)
    return LoadedPlan(file, result.plan, warnings, text)


def _reuse(home: str, file: str, environ: Mapping[str, str]) -> LoadedPlan | None:
    import json

    from dagu.service import plan_cache
    from dagu.spec.plan import PlanError, plan_from_dict

    cached = plan_cache.lookup(home, file, environ)
    if cached is None:
        return None
    try:
        plan = plan_from_dict(json.loads(cached.plan_text))
    except (PlanError, ValueError, TypeError, KeyError, AttributeError):
        return None  # a damaged entry: compile again
    return LoadedPlan(file, plan, cached.warnings, cached.plan_text)


def compile_for_scheduler(file: str) -> "tuple[Plan | None, str | None]":
    """The scheduler's compile seam (schedule/dag_files.py): (plan, diagnostics text)."""
    loaded = load_for_run(file)
    return loaded.plan, loaded.diagnostics


def resolve_dag_name(file: str, home: str | None = None) -> str:
    """The DAG name a FILE argument stands for: a plan's root, a workflow's name, or the word itself.

    A workflow file that no longer compiles still names its history (by its file name).
    With `home`, a workflow's cached plan names it (see `load_for_run`)."""
    if os.path.isfile(file):
        if file.endswith(".json"):
            from dagu.spec.plan import PlanError, load_plan

            try:
                return load_plan(file).root
            except PlanError as exc:
                raise ServiceError(str(exc)) from None
        if home is not None:
            plan = load_for_run(file, home).plan
        else:
            from dagu.compiler.pipeline import compile_file

            plan = compile_file(file).plan
        if plan is not None:
            return plan.root
        return os.path.splitext(os.path.basename(file))[0]
    from dagu.spec.names import dag_name_problem

    if dag_name_problem(file) is None and not file.endswith((".yaml", ".yml", ".json")):
        return file
    raise BadRequest(f"{file!r}: no such file, and not a DAG name (give a workflow file, a plan file or a "
                     "DAG name)")


def list_dags(directory: str, index: "DagIndex | None" = None) -> list[DagEntry]:
    """Every DAG file of a directory (not its base.yaml), compiled, in file-name order.
    With `index` (a long-lived process's), only files that changed are compiled again."""
    from dagu.compiler.base_config import is_base_config

    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        raise BadRequest(f"{directory}: {exc.strerror}") from None
    files = [name for name in names if name.endswith((".yaml", ".yml"))
             and os.path.isfile(os.path.join(directory, name)) and not is_base_config(os.path.join(directory, name))]
    if index is None:
        from dagu.service.dag_index import DagIndex

        index = DagIndex()
    return index.entries(directory, files)


def find_dag(directory: str, name: str) -> DagEntry:
    """The DAG of a directory with this name (what a web page or a worker asks for)."""
    for entry in list_dags(directory):
        if entry.name == name:
            return entry
    raise ServiceError(f"no DAG named {name!r} in {directory}")
