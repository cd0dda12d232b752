"""The corpus: workflow files in the spellings and shapes real Dagu files have (see corpus/README.md).

Every file either compiles or is rejected with located, actionable
diagnostics: `dagu validate` never crashes or prints a traceback, and each
diagnostic names the file, a line and column inside it, and shows the source
line.  The file name prefix says which of the two is expected.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
from pathlib import Path

import pytest

from dagu.cli import main
from dagu.compiler.legacy import LEGACY_CODES
from plan_compare import UNSUPPORTED

CORPUS = Path(__file__).parent / "corpus"
FILES = sorted(p.name for p in CORPUS.glob("*.yaml"))

# Errors whose message alone says what to write instead (the others must carry a note).
SELF_EXPLANATORY = {"wrong-type", "missing-key", "duplicate-key", "not-a-mapping", "unknown-depends",
                    "invalid-value", "out-of-range", "invalid-dag-name", "conflicting-keys"}


def validate(name: str, *extra: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(CORPUS)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["validate", *extra, name])
    finally:
        os.chdir(cwd)
    return code, out.getvalue(), err.getvalue()


def test_the_corpus_covers_every_kind() -> None:
    prefixes = {name.split("_", 1)[0] for name in FILES}
    assert prefixes == {"ok", "newest", "legacy", "bad"}
    assert len(FILES) >= 25


@pytest.mark.parametrize("name", FILES)
def test_file_compiles_or_is_rejected_with_located_diagnostics(name: str) -> None:
    code, out, err = validate(name, "--format", "json")
    assert code in (0, 1), err
    assert "Traceback" not in out + err and "internal error" not in out + err
    report = json.loads(out)
    lines = (CORPUS / name).read_text(encoding="utf-8").split("\n")
    for diag in report["diagnostics"]:
        where = f"{diag['file']}:{diag['line']}:{diag['column']}"
        assert diag["file"] == name, where
        assert 1 <= diag["line"] <= max(len(lines), 1), where
        assert 1 <= diag["column"] <= len(lines[diag["line"] - 1]) + 1, where
        if diag["severity"] == "error" and diag["code"] not in SELF_EXPLANATORY:
            assert diag["notes"], f"{where}: {diag['message']} says nothing about the fix"
    errors = [d for d in report["diagnostics"] if d["severity"] == "error"]
    runnable = [d for d in errors if d["code"] != UNSUPPORTED]  # steps of types with no executor here
    kind = name.split("_", 1)[0]
    if kind == "ok":
        assert code == 0 and not errors, [d["message"] for d in errors]
    elif kind == "newest":
        assert not runnable, [d["message"] for d in runnable]
        assert code == (1 if errors else 0)
    elif kind == "legacy":
        assert code == 1 and errors
        assert {d["code"] for d in errors} <= LEGACY_CODES | {UNSUPPORTED}, [d["message"] for d in errors]
    else:
        assert code == 1 and errors


@pytest.mark.parametrize("name", FILES)
def test_text_output_shows_each_source_line(name: str) -> None:
    code, out, _ = validate(name)
    blocks = [line for line in out.splitlines() if ": error: " in line or ": warning: " in line]
    for header in blocks:
        index = out.splitlines().index(header)
        following = out.splitlines()[index + 1] if index + 1 < len(out.splitlines()) else ""
        if "[empty-file]" not in header:
            assert following.startswith("    "), header  # the source line under each diagnostic


# Lines that real files get wrong, spliced into the corpus by test_damaged_files_never_crash.
DAMAGE = ["run: child", "run: [1, {a: b}]", "action: http.request", "action: [x]", "with: 3", "with: {dag: 1}",
          "executor: 5", "executor: {type: 7}", "executor:\n  type: x\n  config: 3", "consts: [{a: [1]}]",
          "consts: [a, b]", "secrets: [1, x]", "handlerOn: 3", "retryPolicy: x", "params: {x: 1}",
          "action: dag.run", "action: router.route", "with: {value: 1, routes: 3}", "action: chat.completion",
          "with: {messages: 3}", "action: redis.", "action: jq.filter", "with: {filter: 1, data: {a: 1}, input: 2}",
          "Exit: 3", "dir: 3", "run: echo ${consts.x}", "steps: {a: {run: x}}", "---", "name: child", "'", "- [",
          "depends: [[]]", "env: [1]"]


def test_damaged_files_never_crash(tmp_path: Path) -> None:
    """Corpus files with lines inserted, cut or dropped: diagnostics or a plan, never an exception."""
    from dagu.compiler.migrate import migrate_text
    from dagu.compiler.pipeline import compile_file

    rng = random.Random(9)
    texts = [(CORPUS / name).read_text(encoding="utf-8") for name in FILES]
    for i in range(150):
        lines = rng.choice(texts).split("\n")
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(lines) + 1)
            roll = rng.random()
            if roll < 0.6:
                indent = " " * (len(lines[at - 1]) - len(lines[at - 1].lstrip())) if at else ""
                lines.insert(at, "\n".join(indent + piece for piece in rng.choice(DAMAGE).split("\n")))
            elif roll < 0.8 and lines:
                del lines[rng.randrange(len(lines))]
            elif lines:
                j = rng.randrange(len(lines))
                lines[j] = lines[j][: rng.randrange(len(lines[j]) + 1)]
        text = "\n".join(lines)
        path = tmp_path / f"damaged{i}.yaml"
        path.write_text(text, encoding="utf-8")
        result = compile_file(str(path))
        assert result.ok or any(d.is_error for d in result.diagnostics)
        for diag in result.diagnostics:
            assert diag.line >= 1 and diag.col >= 1 and diag.file == str(path), diag
        migration = migrate_text(str(path), text)
        if migration.changed:
            assert not migrate_text(str(path), migration.after).applied  # one pass rewrites everything


def test_every_legacy_spelling_is_reported_in_one_pass() -> None:
    _, out, _ = validate("legacy_readme_style.yaml", "--format", "json")
    found = {(d["line"], d["code"]) for d in json.loads(out)["diagnostics"]}
    text = (CORPUS / "legacy_readme_style.yaml").read_text(encoding="utf-8").splitlines()
    camel = [i + 1 for i, line in enumerate(text)
             if line.strip().split(":")[0] in {"histRetentionDays", "maxActiveRuns", "handlerOn", "mailOn", "errorMail",
                                               "attachLogs", "retryPolicy", "intervalSec", "continueOn", "markSuccess",
                                               "signalOnStop", "mailOnError", "repeatPolicy"}]
    assert {(line, "camel-case-key") for line in camel} <= found
    assert (23, "legacy-key") in found  # dir -> working_dir
