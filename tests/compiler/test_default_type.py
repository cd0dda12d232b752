"""The type of a DAG without `type:` (issue 15; upstream dagucloud/dagu #2168).

What must hold: a written `type:` wins; without one, a DAG in which any step
declares `depends` is a graph, one without any `depends` a chain; `depends`
(even `depends: []`) under an explicit `type: chain` is a located error; and
`dagu explain default-type` says so.
"""

from __future__ import annotations

import contextlib
import io
import textwrap
from pathlib import Path

from dagu.cli import main
from dagu.compiler.pipeline import CompileResult, compile_file


def compiled(tmp_path: Path, text: str) -> CompileResult:
    path = tmp_path / "flow.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return compile_file(str(path))


def shape(result: CompileResult) -> tuple[str, dict[str, tuple[str, ...]]]:
    assert result.ok, [d.message for d in result.diagnostics]
    dag = result.plan.dags[result.plan.root]
    return dag.type, {s.id: s.depends for s in dag.steps}


def errors(result: CompileResult) -> list[str]:
    return [f"{d.line}:{d.col} {d.code}" for d in result.diagnostics if d.is_error]


def test_an_untyped_dag_with_depends_is_a_graph(tmp_path: Path) -> None:
    result = compiled(tmp_path, """\
        steps:
          - id: a
            command: echo a
          - id: b
            command: echo b
          - id: c
            depends: [a]
            command: echo c
        """)
    assert shape(result) == ("graph", {"a": (), "b": (), "c": ("a",)})


def test_an_untyped_dag_without_depends_is_a_chain(tmp_path: Path) -> None:
    result = compiled(tmp_path, """\
        steps:
          - id: a
            command: echo a
          - id: b
            command: echo b
            depends: null
          - id: c
            command: echo c
        """)
    assert shape(result) == ("chain", {"a": (), "b": ("a",), "c": ("b",)})


def test_an_empty_depends_list_makes_an_untyped_dag_a_graph(tmp_path: Path) -> None:
    result = compiled(tmp_path, """\
        steps:
          - id: a
            command: echo a
          - id: b
            depends: []
            command: echo b
        """)
    assert shape(result) == ("graph", {"a": (), "b": ()})


def test_a_written_type_wins(tmp_path: Path) -> None:
    result = compiled(tmp_path, "type: graph\nsteps:\n  - id: a\n    command: echo a\n  - id: b\n    command: echo b\n")
    assert shape(result) == ("graph", {"a": (), "b": ()})


def test_depends_under_an_explicit_chain_is_refused_even_when_empty(tmp_path: Path) -> None:
    result = compiled(tmp_path, """\
        type: chain
        steps:
          - id: a
            command: echo a
          - id: b
            depends: []
            command: echo b
          - id: c
            depends: a
            command: echo c
        """)
    assert errors(result) == ["6:5 chain-depends", "9:5 chain-depends"]


def test_explain_default_type_states_the_rule() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["explain", "default-type"]) == 0
    text = " ".join(out.getvalue().split())
    assert "an explicit `type:` wins" in text
    assert "any step declares `depends`" in text and "is a graph" in text
    assert "without any `depends` runs its steps in file order (a chain)" in text
    assert "explicit `type: chain` is an error" in text
