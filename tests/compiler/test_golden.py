"""Golden diagnostics: each broken file under golden/ and exactly what `dagu validate` prints.

The expected files were reviewed by eye for position, wording and hint; a
change in any of them is a change users see.  Regenerate with
`UPDATE_GOLDEN=1 pytest tests/compiler/test_golden.py` and review the diff.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest

from dagu.cli import main

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.stem for p in GOLDEN.glob("*.yaml"))


def run_validate(name: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(GOLDEN)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["validate", f"{name}.yaml"])
    finally:
        os.chdir(cwd)
    return out.getvalue() + err.getvalue() + f"exit: {code}\n"


@pytest.mark.parametrize("name", CASES)
def test_golden_diagnostics(name: str) -> None:
    actual = run_validate(name)
    expected_file = GOLDEN / f"{name}.expected"
    if os.environ.get("UPDATE_GOLDEN"):
        expected_file.write_text(actual, encoding="utf-8")
    assert actual == expected_file.read_text(encoding="utf-8")


def test_every_broken_file_fails_or_warns() -> None:
    """The corpus is of broken files: each must produce at least one diagnostic."""
    for name in CASES:
        assert "Success: no issues" not in run_validate(name), name
