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


class IgnoringLegacy(Reporter):
    """Compile as if the 1.x spellings were allowed: the plan a 1.x file means."""

    def add(self, diag: Diagnostic) -> None:
        if diag.code not in LEGACY_CODES:
            super().add(diag)
