"""`dagu migrate`: 1.x spellings rewritten to v2 in the file's own text.

What must hold: the diff touches only the 1.x spellings (comments, order,
quoting, blank lines, line endings and a missing final newline survive); the
migrated file holds no 1.x spelling, compiles, and compiles to the plan the 1.x
file meant; `--check` fails when a file would change; `--write` edits in place.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import shutil
import stat
import sys
import textwrap
from pathlib import Path

import pytest
from plan_compare import IgnoringLegacy, IgnoringLegacyAndUnsupported, IgnoringUnsupported, comparable, messages

from dagu.cli import main
from dagu.compiler.chain_rewrite import rewrite_chain
from dagu.compiler.diagnostics import Reporter
from dagu.compiler.migrate import Edit, apply_edits, migrate_file, migrate_text
from dagu.compiler.loader import load_source
from dagu.compiler.pipeline import compile_file
from dagu.compiler.steps import flatten

CORPUS = Path(__file__).parent / "corpus"
LEGACY = sorted(p.name for p in CORPUS.glob("legacy_*.yaml"))


def run_cli(*argv: str, cwd: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
    finally:
        os.chdir(old)
    return code, out.getvalue(), err.getvalue()


def migrated(tmp_path: Path, text: str, name: str = "flow.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return migrate_file(str(path)).after


@pytest.mark.parametrize("name", LEGACY)
def test_migrated_corpus_file_compiles_to_the_plan_the_1x_file_means(tmp_path: Path, name: str) -> None:
    for sibling in CORPUS.glob("ok_*.yaml"):
        shutil.copy(sibling, tmp_path)
    original = tmp_path / name
    shutil.copy(CORPUS / name, original)
    meant = compile_file(str(original), IgnoringLegacyAndUnsupported())  # http, docker, ... as if they ran
    assert meant.ok, messages(meant)
    migration = migrate_file(str(original))
    assert migration.changed and migration.applied and not migration.manual
    original.write_text(migration.after, encoding="utf-8")
    result = compile_file(str(original), IgnoringUnsupported())
    assert result.ok and not result.diagnostics, messages(result)
    assert comparable(result.plan) == comparable(meant.plan)
    again = migrate_text(str(original), migration.after)
    assert not again.changed  # nothing 1.x is left


CONFORMANCE = Path("/work/shared/conformance")


def _legacy_translate():
    """The conformance runner's own v2 -> Dagu 1.x translation (its --legacy flag)."""
    spec = importlib.util.spec_from_file_location("conformance_run", CONFORMANCE / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["conformance_run"] = module
    spec.loader.exec_module(module)
    return module.legacy_translate


@pytest.mark.skipif(not (CONFORMANCE / "run.py").is_file(), reason="conformance suite not present")
def test_conformance_cases_survive_a_trip_through_1x(tmp_path: Path) -> None:
    """v2 case -> 1.x spelling (written by another tool) -> `dagu migrate` -> the same plan as the case."""
    translate = _legacy_translate()
    checked = 0
    for case in sorted((CONFORMANCE / "cases").glob("*.yaml")):
        original = compile_file(str(case))
        if not original.ok:
            continue  # the validate_* cases are broken on purpose
        legacy = tmp_path / case.name
        migration = migrate_text(str(legacy), translate(case.read_text(encoding="utf-8")))
        legacy.write_text(migration.after, encoding="utf-8")
        result = compile_file(str(legacy))
        assert result.ok, (case.name, messages(result))
        expected, got = comparable(original.plan), comparable(result.plan)
        for plan in (expected, got):
            for dag in plan["dags"].values():
                dag.pop("base_dir")
        assert got == expected, case.name
        checked += 1
    assert checked > 50


def test_keys_are_renamed_in_place_keeping_comments_quotes_and_layout(tmp_path: Path) -> None:
    after = migrated(tmp_path, """\
        # heading comment
        "maxActiveRuns": 1   # trailing comment

        'handlerOn':
          exit: {command: "echo bye"}   # flow stays flow
        steps:
          - name: a     # first
            command: echo a
            retryPolicy: {limit: 2, intervalSec: 5}
        """)
    assert after == textwrap.dedent("""\
        # heading comment
        "max_active_runs": 1   # trailing comment

        'handler_on':
          exit: {command: "echo bye"}   # flow stays flow
        steps:
          - name: a     # first
            command: echo a
            retry_policy: {limit: 2, interval_sec: 5}
        """)


def test_block_executor_is_lifted_one_level_with_its_comments(tmp_path: Path) -> None:
    after = migrated(tmp_path, """\
        steps:
          - executor:   # runs in docker
              type: docker
              # pinned image
              config:
                image: alpine:3.20
                script: |
                  echo "kept as is"

            command: echo hi
          - name: b
            executor:
              type: ssh
        # a comment at column 0 inside the block
              config: {host: h}
            command: uptime
        """)
    assert after == textwrap.dedent("""\
        steps:
          - type: docker  # runs in docker
            # pinned image
            config:
              image: alpine:3.20
              script: |
                echo "kept as is"

            command: echo hi
          - name: b
            type: ssh
        # a comment at column 0 inside the block
            config: {host: h}
            command: uptime
        """)


def test_flow_executor_and_bare_executor(tmp_path: Path) -> None:
    after = migrated(tmp_path, """\
        steps:
          - name: a
            executor: {type: http, config: {timeout: 5}}
            command: GET https://example.com
          - {name: b, executor: {type: jq}, command: .a}
          - name: c
            executor: mail
        """)
    assert after == textwrap.dedent("""\
        steps:
          - name: a
            type: http
            config: {timeout: 5}
            command: GET https://example.com
          - {name: b, type: jq, command: .a}
          - name: c
            type: mail
        """)


def test_run_of_a_dag_becomes_call_and_commands_stay(tmp_path: Path) -> None:
    after = migrated(tmp_path, """\
        steps:
          - run: child
          - run: echo child
        ---
        name: child
        steps: [echo in child]
        """)
    assert after.splitlines()[1] == "  - call: child"
    assert after.splitlines()[2] == "  - run: echo child"


def test_line_endings_and_a_missing_final_newline_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "crlf.yaml"
    path.write_bytes(b"steps:\r\n  - command: echo a\r\n    executor:\r\n      type: docker\r\n"
                     b"      config: {image: a}\r\n    continueOn: {failure: true}")
    migration = migrate_file(str(path))
    assert migration.after == ("steps:\r\n  - command: echo a\r\n    type: docker\r\n    config: {image: a}\r\n"
                               "    continue_on: {failure: true}")


def test_files_without_1x_spellings_are_left_alone(tmp_path: Path) -> None:
    for name in ("ok_multi_doc.yaml", "newest_release.yaml", "ok_no_trailing_newline.yaml"):
        migration = migrate_file(str(CORPUS / name))
        assert not migration.changed and migration.diff() == ""


def test_what_cannot_be_rewritten_is_left_with_a_located_note(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    shutil.copy(CORPUS / "bad_executor_by_hand.yaml", path)
    migration = migrate_file(str(path))
    assert not migration.changed and len(migration.manual) == 2
    assert migration.notes[0].startswith(f"{path}:3:5: note: 'executor' is not rewritten")
    chain = migrated(tmp_path, """\
        steps:
          - name: a
            command: echo a
          - echo one
            and two
          - name: c
            command: echo c
            depends: a
            continueOn: {failure: true}
        """, name="chain.yaml")
    assert "type:" not in chain  # a multi-line bare command: nothing of the chain is rewritten
    notes = migrate_file(str(tmp_path / "chain.yaml")).notes
    assert notes[0].startswith(f"{tmp_path / 'chain.yaml'}:4:5: note: this step is a command written as a multi-line")
    assert notes[1].startswith(f"{tmp_path / 'chain.yaml'}:8:5: note: this DAG has no 'type:'")


def test_cli_prints_the_diff_and_check_fails_on_change(tmp_path: Path) -> None:
    shutil.copy(CORPUS / "legacy_mixed_spellings.yaml", tmp_path / "old.yaml")
    shutil.copy(CORPUS / "ok_child.yaml", tmp_path / "ok_child.yaml")
    before = (tmp_path / "old.yaml").read_text(encoding="utf-8")
    code, out, err = run_cli("migrate", "--check", "old.yaml", "ok_child.yaml", cwd=tmp_path)
    assert code == 1
    assert out.startswith("--- a/old.yaml\n+++ b/old.yaml\n")
    assert "-timeoutSec: 600\n+timeout_sec: 600\n" in out
    assert "would rewrite 1 of 2 files" in err
    assert (tmp_path / "old.yaml").read_text(encoding="utf-8") == before
    code, _, _ = run_cli("migrate", "--check", "ok_child.yaml", cwd=tmp_path)
    assert code == 0


def test_cli_write_edits_in_place_keeping_mode_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "old.yaml"
    path.write_bytes(b"\xef\xbb\xbfmaxActiveRuns: 1\nsteps: [echo a]\n")
    path.chmod(0o640)
    code, out, err = run_cli("migrate", "--write", "old.yaml", cwd=tmp_path)
    assert code == 0 and "rewrote 1 of 1 file" in err
    assert path.read_bytes() == b"\xef\xbb\xbfmax_active_runs: 1\nsteps: [echo a]\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    code, out, _ = run_cli("migrate", "--check", "old.yaml", cwd=tmp_path)
    assert code == 0 and out == ""


def test_cli_reports_an_unparsable_file_at_its_position(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("steps:\n  - command: [echo\n", encoding="utf-8")
    code, out, err = run_cli("migrate", "broken.yaml", cwd=tmp_path)
    assert code == 1 and out == ""
    assert "broken.yaml:3:1: error: YAML syntax error" in err


# --- a 1.x chain whose steps also set depends -------------------------------------------------
# Dagu 1.30.2 ran such a file as the chain (each item after the item before it; a nested list is a
# group whose members run together) plus the declared depends.  The migrated file says exactly that.


def meant_by_1x(text: str) -> dict[str, set[str]]:
    """Each step's dependencies as Dagu 1.x ran the (first) document: the chain's plus its own."""
    doc = load_source("x.yaml", text, IgnoringLegacy()).documents[0]
    drafts = flatten(None, doc.data["steps"], chain=True)
    by_name = {}
    for d in drafts:
        if isinstance(d.raw.get("name"), str):
            by_name.setdefault(d.raw["name"], d.id)
    ids = {d.id for d in drafts}
    return {d.id: set(d.implied) | {t if t in ids else by_name[t] for t, _ in d.depends} for d in drafts}


def planned(path: Path) -> dict[str, set[str]]:
    result = compile_file(str(path))
    assert result.ok and not result.diagnostics, messages(result)
    return {s.id: set(s.depends) for s in result.plan.dags[result.plan.root].steps}


def check_chain_migration(tmp_path: Path, text: str, expected: str) -> None:
    """The chain rewrite of `text` is `expected`.  In a file with a 1.x spelling, migrate makes it
    (compile reads the file as a 1.x chain and refuses its depends); in a v2 file the untyped DAG
    with depends is a graph, which migrate leaves alone, so the rewrite is asked for directly."""
    path = tmp_path / "chain.yaml"
    text = textwrap.dedent(text)
    path.write_text(text, encoding="utf-8")
    migration = migrate_file(str(path))
    if migration.applied:
        assert "chain-depends" in {d.code for d in compile_file(str(path)).diagnostics}
        after = migration.after
    else:
        assert compile_file(str(path)).plan.dags["chain"].type == "graph"
        assert not migration.changed
        source = load_source(str(path), text, Reporter())
        rewrite = rewrite_chain(source, source.documents[0])
        after = apply_edits(text, [Edit(*e) for e in rewrite.edits])
    assert after == textwrap.dedent(expected)
    path.write_text(after, encoding="utf-8")
    assert planned(path) == meant_by_1x(text)
    assert not migrate_text(str(path), after).changed


def test_an_untyped_graph_is_rewritten_only_in_a_file_with_1x_spellings(tmp_path: Path) -> None:
    text = "steps:\n  - echo a\n  - name: b\n    depends: a_step\n    command: echo b\n"
    graph = tmp_path / "graph.yaml"
    graph.write_text(text.replace("a_step", "cmd_1"), encoding="utf-8")
    assert not migrate_file(str(graph)).changed
    old = tmp_path / "old.yaml"
    old.write_text(text.replace("a_step", "cmd_1") + "    continueOn: {failure: true}\n", encoding="utf-8")
    assert migrate_file(str(old)).after == (
        "type: graph\nsteps:\n  - echo a\n  - name: b\n    depends: cmd_1\n    command: echo b\n"
        "    continue_on: {failure: true}\n")


def test_1x_chain_with_depends_becomes_a_graph_keeping_comments(tmp_path: Path) -> None:
    check_chain_migration(tmp_path, """\
        # yaml-language-server: $schema=https://example.com/dag.schema.json
        # nightly load

        name: nightly   # the DAG's name
        steps:
          - name: extract   # first
            command: ./extract.sh
          - name: transform
            command: ./transform.sh
          - name: load data
            depends:
              - extract   # the raw files
            command: ./load.sh
            continueOn:
              failure: true
          - name: notify
            command: ./notify.sh
            depends: load data
          - name: archive
            depends: [extract]
            command: ./archive.sh
        """, """\
        # yaml-language-server: $schema=https://example.com/dag.schema.json
        # nightly load

        type: graph
        name: nightly   # the DAG's name
        steps:
          - name: extract   # first
            command: ./extract.sh
          - name: transform
            depends: extract
            command: ./transform.sh
          - name: load data
            depends:
              - extract   # the raw files
              - transform
            command: ./load.sh
            continue_on:
              failure: true
          - name: notify
            command: ./notify.sh
            depends: load data
          - name: archive
            depends: [extract, notify]
            command: ./archive.sh
        """)


def test_parallel_groups_bare_commands_and_flow_steps(tmp_path: Path) -> None:
    check_chain_migration(tmp_path, """\
        steps:
          - id: fetch
            command: ./fetch.sh
          - - name: left
              command: ./left.sh
            - command: ./right.sh
              depends: fetch
          - name: join
            depends: [left]
            command: ./join.sh
          - echo bare
          - command: |
              echo block
            name: has block
          - {name: flowy, command: echo f}
          - {name: flowy2, command: echo f, depends: [flowy]}
          - name: scalar
            depends: 'has block'
            command: echo s
        """, """\
        type: graph
        steps:
          - id: fetch
            command: ./fetch.sh
          - - name: left
              depends: fetch
              command: ./left.sh
            - command: ./right.sh
              depends: fetch
          - name: join
            depends: [left, cmd_3]
            command: ./join.sh
          - command: echo bare
            depends: join
          - command: |
              echo block
            name: has block
            depends: cmd_5
          - {name: flowy, command: echo f, depends: has block}
          - {name: flowy2, command: echo f, depends: [flowy]}
          - name: scalar
            depends: ['has block', flowy2]
            command: echo s
        """)


def test_steps_as_a_map_and_flow_lists(tmp_path: Path) -> None:
    check_chain_migration(tmp_path, """\
        steps:
          a:
            command: echo a
          b: echo b   # bee
          c:
            command: echo c
            depends: a
        """, """\
        type: graph
        steps:
          a:
            command: echo a
          b:
            command: echo b
            depends: a   # bee
          c:
            command: echo c
            depends: [a, b]
        """)
    check_chain_migration(tmp_path, """\
        steps: [echo a, {name: b, command: echo b, depends: cmd_1}, echo c]
        """, """\
        type: graph
        steps: [echo a, {name: b, command: echo b, depends: cmd_1}, {command: echo c, depends: b}]
        """)


def test_generated_ids_used_as_depends_come_with_a_note(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text("steps:\n  - echo a\n  - name: b\n    depends: []\n    command: echo b\n    mailOnError: true\n",
                    encoding="utf-8")
    migration = migrate_file(str(path))
    assert migration.after == ("type: graph\nsteps:\n  - echo a\n  - name: b\n    depends: [cmd_1]\n    command: echo b\n"
                               "    mail_on_error: true\n")
    assert migration.notes == [f"{path}:2:5: note: this step has no id or name, so depends refers to it by its "
                               "generated id 'cmd_1', which changes when steps are added above it; give it an id"]


def test_chain_depends_in_a_1x_file_points_to_migrate(tmp_path: Path) -> None:
    shutil.copy(CORPUS / "bad_legacy_chain_depends.yaml", tmp_path / "old.yaml")
    code, out, _ = run_cli("validate", "old.yaml", cwd=tmp_path)
    assert code == 1
    assert ("old.yaml:7:5: error: step 'load data' sets depends, but the DAG is type: chain  [chain-depends]"
            in out)
    assert ("  note: Dagu 1.x ran this step after the one before it and after its depends; "
            "`dagu migrate old.yaml --write` rewrites the file as type: graph with every dependency written out"
            in out)
    code, _, _ = run_cli("migrate", "--write", "old.yaml", cwd=tmp_path)
    assert code == 0
    code, out, _ = run_cli("validate", "old.yaml", cwd=tmp_path)
    assert code == 0, out
