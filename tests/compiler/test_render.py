"""Machine-readable diagnostics: the json, github and sarif formats carry the same facts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden"


def dagu(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dagu", *args], capture_output=True, text=True, cwd=GOLDEN)


def test_github_annotations_point_at_file_line_col() -> None:
    proc = dagu("validate", "--format", "github", "unknown_depends.yaml", "references.yaml")
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert "::error file=unknown_depends.yaml,line=6,col=14,endColumn=19,title=unknown-depends::" \
           "step 'test' depends on unknown step 'biuld'%0Anote: did you mean 'build'?" in lines
    assert any(line.startswith("::warning file=references.yaml,line=12,col=59,") for line in lines)


def test_sarif_log_has_rules_and_results() -> None:
    proc = dagu("validate", "--format", "sarif", "cycle.yaml", "bad_schedule.yaml")
    assert proc.returncode == 1
    log = json.loads(proc.stdout)
    assert log["version"] == "2.1.0"
    run = log["runs"][0]
    rules = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert rules == sorted(set(rules)) and "dependency-cycle" in rules and "invalid-cron" in rules
    results = run["results"]
    assert len(results) == 6
    cycle = next(r for r in results if r["ruleId"] == "dependency-cycle")
    region = cycle["locations"][0]["physicalLocation"]["region"]
    assert (region["startLine"], region["startColumn"]) == (4, 14)
    assert cycle["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "cycle.yaml"
    for r in results:
        assert rules[r["ruleIndex"]] == r["ruleId"]


def test_json_format_and_strict_mode() -> None:
    proc = dagu("validate", "--format", "json", "unterminated.yaml")
    assert proc.returncode == 0  # a warning alone passes...
    data = json.loads(proc.stdout)
    assert [d["code"] for d in data["diagnostics"]] == ["unterminated-reference"]
    assert dagu("validate", "--strict", "unterminated.yaml").returncode == 1  # ...unless --strict


def test_usage_errors_exit_2_without_traceback() -> None:
    proc = dagu("validate", "no-such-file.yaml")
    assert proc.returncode == 2
    assert "no such file" in proc.stderr and "Traceback" not in proc.stderr
    assert dagu("compile").returncode == 2
