"""Comparing plans of one workflow written in different spellings (used by the spelling and migrate tests)."""

from __future__ import annotations

from typing import Any

from dagu.compiler.diagnostics import Diagnostic, Reporter
from dagu.compiler.legacy import LEGACY_CODES
from dagu.compiler.pipeline import CompileResult
from dagu.spec.plan import Plan, plan_to_dict


def comparable(plan: Plan) -> dict[str, Any]:
    """A plan without what depends on where and how it was written (source map, file, hashes)."""
    data = plan_to_dict(plan)
    for key in ("source", "source_sha256", "dependencies"):
        data.pop(key)
    for dag in data["dags"].values():
        dag.pop("source_map")
        dag.pop("file")
    return data


def messages(result: CompileResult) -> list[str]:
    return [f"{d.line}:{d.col} {d.code} {d.message}" for d in result.diagnostics]


UNSUPPORTED = "unsupported-step-type"


class IgnoringLegacy(Reporter):
    """Compile as if the 1.x spellings were allowed: the plan a 1.x file means."""

    ignored: frozenset[str] = LEGACY_CODES

    def add(self, diag: Diagnostic) -> None:
        if diag.code not in self.ignored:
            super().add(diag)


class IgnoringUnsupported(IgnoringLegacy):
    """Compile as if this build ran every type of the format: the plan a file means the day the
    executors of its types land (how the spelling tests compare steps of http, ssh, docker, ...)."""

    ignored = frozenset({UNSUPPORTED})


class IgnoringLegacyAndUnsupported(IgnoringLegacy):
    ignored = LEGACY_CODES | {UNSUPPORTED}


def unsupported(result: CompileResult) -> list[int]:
    """The lines of a result's unsupported-step-type errors."""
    return sorted(d.line for d in result.diagnostics if d.code == UNSUPPORTED)
