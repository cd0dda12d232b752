"""The compiler reads the step-type catalogue: what a step's type allows is checked where the user wrote it.

A type with no executor in this build, a `with:` its type refuses, a key its
type would ignore and a sub-DAG step without `call:` are each a located
compile error, so `dagu validate` and `dagu dry` refuse a workflow the run
would fail (or silently half-run) at that step.
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from plan_compare import messages

from dagu.cli import main
from dagu.compiler.context import DocContext
from dagu.compiler.diagnostics import Reporter
from dagu.compiler.loader import load_source
from dagu.compiler.pipeline import CompileResult, compile_file
from dagu.executors import catalog

ROOT = Path(__file__).parents[2]


def compile_text(tmp_path: Path, text: str, name: str = "flow.yaml") -> CompileResult:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return compile_file(str(path))


def located(result: CompileResult) -> list[tuple]:
    """(file name, line, col, code, message) of every diagnostic, in file order."""
    return sorted((Path(d.file).name, d.line, d.col, d.code, d.message) for d in result.diagnostics)


def cli(*argv: str, cwd: Path) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
    finally:
        os.chdir(old)
    return code, out.getvalue() + err.getvalue()


# --------------------------------------------------------------------------- unsupported types


def test_a_type_without_an_executor_is_refused_at_its_type_line(tmp_path: Path) -> None:
    result = compile_text(tmp_path, """\
        steps:
          - id: first
            command: echo side effect
          - id: ping
            type: archive
            with: {source: in, destination: out.tar}
        """)
    assert located(result) == [
        ("flow.yaml", 5, 11, "unsupported-step-type", "step type 'archive' is not supported by this build")]
    (diag,) = result.diagnostics
    assert diag.notes[0].startswith("types this build runs: " + ", ".join(catalog.runnable_names()))
    assert "the day its executor lands" in diag.notes[1]


def test_an_action_of_such_a_type_is_refused_at_its_action_line(tmp_path: Path) -> None:
    result = compile_text(tmp_path, """\
        steps:
          - id: ping
            action: archive.create
            with: {source: in, destination: out.tar}
          - id: box
            action: archive
            with: {image: alpine}
        """)
    assert located(result) == [
        ("flow.yaml", 3, 13, "unsupported-step-type", "action 'archive.create' is not supported by this build"),
        ("flow.yaml", 6, 13, "unsupported-step-type", "action 'archive' is not supported by this build")]


def test_aliases_of_unsupported_types_are_unsupported_and_other_names_unknown(tmp_path: Path) -> None:
    result = compile_text(tmp_path, """\
        steps:
          - id: k
            type: github_action
          - id: typo
            type: htpp
            command: echo
        """)
    assert located(result) == [
        ("flow.yaml", 3, 11, "unsupported-step-type", "step type 'github_action' is not supported by this build"),
        ("flow.yaml", 5, 11, "unknown-step-type", "unknown step type 'htpp'")]
    unknown = result.diagnostics[-1] if result.diagnostics[-1].code == "unknown-step-type" else result.diagnostics[0]
    assert unknown.notes[0] == "did you mean 'http'?"


def test_every_catalogue_name_and_alias_is_a_type_the_compiler_accepts(tmp_path: Path) -> None:
    """No second list: each name the catalogue gives compiles (with the keys that type reads)."""
    bodies = {"command": "command: echo hi", "call": "call: child", "router": "value: x\n    routes: {x: [done]}",
              "noop": "", "docker": "with: {image: a}\n    command: echo", "kubernetes": "with: {image: a}",
              "redis": "with: {command: PING}", "s3": "command: list",
              "ssh": "command: echo\n    with: {host: h}", "sftp": "with: {host: h, source: a, destination: b}"}
    bodies.update({"mail": "with: {from: a@b.c, to: d@b.c}", "sqlite": "with: {dsn: x.db}\n    command: SELECT 1",
                   "postgres": "with: {dsn: 'host=x'}\n    command: SELECT 1"})
    steps = []
    for i, (name, line) in enumerate(sorted(catalog.by_name().items())):
        body = bodies.get(line.name, "")  # in-process types need nothing at compile time
        steps.append(f"  - id: s{i}\n    type: {name}\n" + (f"    {body}\n" if body else ""))
    text = "type: graph\nsteps:\n" + "".join(steps) + "  - id: done\n    command: echo\n---\nname: child\nsteps: [echo c]\n"
    result = compile_text(tmp_path, text)
    assert result.ok and not result.diagnostics, messages(result)
    planned = {s.type for s in result.plan.main.steps}
    assert planned == {line.name for line in catalog.CATALOGUE}


def test_a_custom_type_on_an_unsupported_base_is_refused_at_its_definition(tmp_path: Path) -> None:
    result = compile_text(tmp_path, """\
        step_types:
          fetch:
            type: archive
            input_schema: {type: object}
            template:
              with: {source: x}
        steps:
          - id: a
            type: fetch
          - id: b
            type: fetch
        """)
    assert located(result) == [
        ("flow.yaml", 3, 11, "unsupported-step-type", "step type 'archive' is not supported by this build")]


def test_validate_strict_and_dry_refuse_an_unsupported_type(tmp_path: Path) -> None:
    (tmp_path / "flow.yaml").write_text("steps:\n  - echo one\n  - {id: ping, type: archive, with: {url: x}}\n")
    code, out = cli("validate", "--strict", "flow.yaml", cwd=tmp_path)
    assert code == 1 and "flow.yaml:3:22: error: step type 'archive' is not supported by this build" in out, out
    code, out = cli("dry", "flow.yaml", cwd=tmp_path)
    assert code == 1 and "[unsupported-step-type]" in out and "Traceback" not in out, out
    assert "echo one" not in out  # nothing is shown as runnable


def test_dagu_explain_knows_the_new_codes(tmp_path: Path) -> None:
    for code_name, words in (("unsupported-step-type", "no executor"), ("ignored-step-key", "silently ignore")):
        code, out = cli("explain", code_name, cwd=tmp_path)
        assert code == 0 and out.startswith(f"{code_name} (error)") and words in out, out


# --------------------------------------------------------------------------- with: input


def test_with_on_a_type_that_takes_none_is_an_error_at_each_key(tmp_path: Path) -> None:
    result = compile_text(tmp_path, """\
        steps:
          - id: a
            command: echo
            with:
              image: alpine
              retries: 2
          - id: b
            type: noop
            config: {x: 1}
        """)
    assert located(result) == [
        ("flow.yaml", 5, 7, "unknown-key", "unknown key 'image' in 'with' of step 'a'"),
        ("flow.yaml", 6, 7, "unknown-key", "unknown key 'retries' in 'with' of step 'a'"),
        ("flow.yaml", 9, 14, "unknown-key", "unknown key 'x' in 'config' of step 'b'")]
    assert result.diagnostics[0].notes == ("type command takes no with: input: remove it",)


SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["url"],
    "properties": {
        "url": {"type": "string"},
        "method": {"enum": ["GET", "POST"]},
        "timeout": {"type": "integer"},
        "token": {"type": "string", "x-secret": True},
    },
}


def _check(tmp_path: Path, step: str) -> list[tuple]:
    """check_config of the one step in `step` against SCHEMA (a catalogue schema with every keyword)."""
    from dagu.compiler.step_checks import check_config

    path = tmp_path / "one.yaml"
    path.write_text("steps:\n" + textwrap.indent(textwrap.dedent(step), "  "), encoding="utf-8")
    reporter = Reporter()
    source = load_source(str(path), path.read_text(), reporter)
    ctx = DocContext(source, source.documents[0], reporter)
    raw = ctx.doc.data["steps"][0]
    check_config(ctx, ("steps", 0), raw, SCHEMA, "fetch", "s")
    return sorted((d.line, d.col, d.code, d.message, d.notes) for d in reporter.diagnostics)


def test_with_is_checked_against_the_schema_at_each_place(tmp_path: Path) -> None:
    got = _check(tmp_path, """\
        - id: s
          with:
            methd: GET
            method: PUT
            timeout: soon
        """)
    assert got == [
        (4, 7, "missing-key", "'with' of step 's' needs 'url'", ()),  # at the with: mapping
        (4, 7, "unknown-key", "unknown key 'methd' in 'with' of step 's'", ("did you mean 'method'?",)),
        (5, 15, "invalid-value", "'with.method' of step 's' must be one of \"GET\", \"POST\", got string \"PUT\"", ()),
        (6, 16, "wrong-type", "'with.timeout' of step 's' must be an integer, got string \"soon\"", ()),
    ]


def test_secret_fields_are_an_allowed_schema_keyword(tmp_path: Path) -> None:
    assert _check(tmp_path, "- id: s\n  with: {url: x, token: t}\n") == []


def test_catalogue_schemas_are_valid_json_schemas() -> None:
    from jsonschema import Draft202012Validator

    for line in catalog.CATALOGUE:
        Draft202012Validator.check_schema(dict(line.config_schema))


# --------------------------------------------------------------------------- keys a type ignores


def test_keys_the_type_would_ignore_are_errors_at_the_key(tmp_path: Path) -> None:
    result = compile_text(tmp_path, """\
        type: graph
        steps:
          - id: join
            type: noop
            command: echo hi
          - id: route
            type: router
            value: x
            routes: {x: [join]}
            command: echo routed
          - id: sub
            call: child
            script: echo never
          - id: plain
            command: echo
            value: "3"
        ---
        name: child
        steps: [echo c]
        """)
    assert located(result) == [
        ("flow.yaml", 5, 5, "ignored-step-key", "step 'join' sets 'command', which a noop step does not read"),
        ("flow.yaml", 10, 5, "ignored-step-key", "step 'route' sets 'command', which a router step does not read"),
        ("flow.yaml", 13, 5, "ignored-step-key", "step 'sub' sets 'script', which a call step does not read"),
        ("flow.yaml", 16, 5, "ignored-step-key", "step 'plain' sets 'value', which a command step does not read"),
    ]


# --------------------------------------------------------------------------- sub-DAG steps


def test_a_sub_dag_type_without_call_is_a_missing_key(tmp_path: Path) -> None:
    result = compile_text(tmp_path, """\
        type: graph
        steps:
          - id: a
            type: dag
          - id: b
            type: parallel
            parallel: [1, 2]
          - id: c
            type: subworkflow
            params: X=1
        """)
    assert located(result) == [
        ("flow.yaml", 3, 5, "missing-key", "step 'a' needs 'call'"),
        ("flow.yaml", 5, 5, "missing-key", "step 'b' needs 'call'"),
        ("flow.yaml", 8, 5, "missing-key", "step 'c' needs 'call'"),
    ]
    assert result.diagnostics[0].notes == ("type dag runs another DAG: name it with `call: NAME`",)


# --------------------------------------------------------------------------- approval steps


def test_hitl_approval_and_wait_compile_to_a_noop_that_waits(tmp_path: Path) -> None:
    result = compile_text(tmp_path, """\
        type: graph
        steps:
          - id: gate
            type: hitl
            with:
              prompt: Ship ${VERSION}?
              input: [reason, ticket]
              required: [ticket]
          - id: plain
            type: approval
          - id: ask
            type: wait
            with: {prompt: go?}
            approval: {rewind_to: gate}
            depends: gate
          - id: task
            action: human.task
            with: {prompt: Review it}
        env: [{VERSION: "1"}]
        """)
    assert result.ok and not result.diagnostics, messages(result)
    steps = {s.id: s for s in result.plan.main.steps}
    assert {s.type for s in steps.values()} == {"noop"}
    assert steps["gate"].options["approval"] == {
        "prompt": {"$expr": ["Ship ", {"var": "VERSION", "path": []}, "?"]},
        "input": ["reason", "ticket"], "required": ["ticket"]}
    assert steps["gate"].config == {}
    assert steps["plain"].options["approval"] == {}
    assert steps["ask"].options["approval"] == {"rewind_to": "gate", "prompt": "go?"}
    assert steps["task"].options["approval"] == {"prompt": "Review it"}


def test_an_approval_steps_input_is_checked(tmp_path: Path) -> None:
    result = compile_text(tmp_path, """\
        steps:
          - id: gate
            type: hitl
            command: ./deploy.sh
            with:
              promt: Go?
              input: ticket
          - id: task
            action: human.task
            with: {prompt: Go?, form: {a: 1}}
        """)
    assert located(result) == [
        ("flow.yaml", 4, 5, "ignored-step-key", "step 'gate' sets 'command', which a hitl step does not read"),
        ("flow.yaml", 6, 7, "unknown-key", "unknown key 'promt' in 'with' of step 'gate'"),
        ("flow.yaml", 7, 14, "wrong-type", "'with.input' of step 'gate' must be a list, got string \"ticket\""),
        ("flow.yaml", 10, 25, "unknown-key", "unknown key 'form' in 'with' of step 'task'"),
    ]
    promt = next(d for d in result.diagnostics if "promt" in d.message)
    assert promt.notes == ("did you mean 'prompt'?",)


# --------------------------------------------------------------------------- imports and speed


def test_the_compiler_reads_only_the_catalogue_of_the_executors_package() -> None:
    """The catalogue imports nothing of ours (but dataclass), and the compiler imports no executor but it."""
    tree = ast.parse((ROOT / "executors" / "catalog.py").read_text(encoding="utf-8"))
    ours = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("dagu")
            and n.module != "dagu.spec.records"]  # cheap dataclasses, standard library only
    assert ours == []
    for path in (ROOT / "compiler").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dagu.executors"):
                assert node.module == "dagu.executors.catalog", (path.name, node.module)
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("dagu.executors") for a in node.names), path.name


def test_compiling_a_simple_file_loads_no_executor_and_no_jsonschema(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text("type: graph\nsteps:\n  - echo a\n  - {id: b, command: echo b, depends: cmd_1}\n", encoding="utf-8")
    code = ("import sys\nfrom dagu.compiler.pipeline import compile_file\n"
            f"assert compile_file({str(flow)!r}).ok\n"
            "bad = [m for m in sys.modules if m == 'jsonschema' or m in "
            "('dagu.executors.command', 'dagu.executors.call', 'dagu.executors.router', 'dagu.executors.noop')]\n"
            "assert not bad, bad\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
