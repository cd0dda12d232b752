"""The layers stay apart (spec/architecture.md): front ends call the service, the runtime reads plans, never YAML.

The plan file is the seam (see spec/plan.py).  The compiler's libraries (lark,
networkx, jsonschema) must not be imported by the runtime, the executors or the
web, and the runtime and executors must not import the compiler at all, so a
frozen runner stays small and a plan compiled elsewhere runs as is.  The source
is read with `ast` rather than imported, so a forbidden import inside a
function, which only runs later, is caught too.

A second check runs `dagu validate` with `-X importtime` and looks at what was
actually loaded: heavy client libraries belong to the executors that use them
and must not be pulled in on the way to the compiler.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "dagu"  # the repository root installs as this package

COMPILER_LIBRARIES = ("lark", "networkx", "jsonschema")
COMPILER = (f"{PACKAGE}.compiler",)
HEAVY_CLIENTS = ("flask", "requests", "paramiko", "docker", "kubernetes", "openai")


def module_package(path: Path) -> str:
    """The package a source file's relative imports start from, e.g. engine/x.py -> dagu.engine."""
    parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1])


def imported_modules(source: str, package: str, filename: str = "<source>") -> Iterator[tuple[int, str]]:
    """(line, module) for every import in the source, at any depth, relative ones made absolute.

    `from a import b` yields both `a` and `a.b`, since b may be a submodule.
    Calls to importlib.import_module / __import__ with a literal name count too.
    """
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                if node.level > 1:
                    base_parts = base_parts[: -(node.level - 1)]
                base = ".".join(p for p in [*base_parts, node.module or ""] if p)
            else:
                base = node.module or ""
            yield node.lineno, base
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{base}.{alias.name}"
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in ("import_module", "__import__"):
                yield node.lineno, node.args[0].value


def forbidden_imports(source: str, package: str, banned: tuple[str, ...], filename: str = "<source>") -> list[str]:
    """'file:line: imports X' for each import of a banned module or one of its submodules."""
    found = []
    for line, module in imported_modules(source, package, filename):
        if any(module == b or module.startswith(b + ".") for b in banned):
            found.append(f"{filename}:{line}: imports {module}")
    return sorted(set(found))


def sources_under(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def violations(paths: list[Path], banned: tuple[str, ...]) -> list[str]:
    out = []
    for path in paths:
        out += forbidden_imports(path.read_text(encoding="utf-8"), module_package(path), banned,
                                 str(path.relative_to(ROOT)))
    return out


# --------------------------------------------------------------------------
# The checker itself: it must be able to fail.
# --------------------------------------------------------------------------


def test_checker_finds_an_import_inside_a_function() -> None:
    source = "import json\n\ndef layout(g):\n    import networkx as nx\n    return nx.spring_layout(g)\n"
    assert forbidden_imports(source, "dagu.web", COMPILER_LIBRARIES) == ["<source>:4: imports networkx"]


@pytest.mark.parametrize(("source", "package", "found"), [
    ("from networkx.algorithms import dag\n", "dagu.web", "networkx.algorithms"),
    ("import lark.lexer\n", "dagu.web", "lark.lexer"),
    ("import dagu.compiler.pipeline as p\n", "dagu.engine", "dagu.compiler.pipeline"),
    ("from dagu.compiler import compile_file\n", "dagu.engine", "dagu.compiler"),
    ("from dagu import compiler\n", "dagu.executors", "dagu.compiler"),
    ("from ..compiler.pipeline import compile_file\n", "dagu.engine", "dagu.compiler.pipeline"),
    ("from .. import compiler\n", "dagu.engine", "dagu.compiler"),
    ("from ...compiler import x\n", "dagu.executors.ssh", "dagu.compiler"),
    ("import importlib\nm = importlib.import_module('dagu.compiler')\n", "dagu.engine", "dagu.compiler"),
    ("j = __import__('jsonschema')\n", "dagu.web", "jsonschema"),
])
def test_checker_finds_each_form_of_import(source: str, package: str, found: str) -> None:
    banned = COMPILER_LIBRARIES + COMPILER
    assert any(v.endswith(f"imports {found}") for v in forbidden_imports(source, package, banned))


@pytest.mark.parametrize("source", [
    "import json\nfrom dagu.spec.plan import load_plan\n",
    "from . import scheduler\nfrom .journal import append\n",
    "from ..spec import plan\n",
    "import larkspur\nimport networkx_extra\n",  # names that only start like a banned one
    "from dagu.compilers import x\n",
])
def test_checker_accepts_allowed_imports(source: str) -> None:
    assert forbidden_imports(source, "dagu.engine", COMPILER_LIBRARIES + COMPILER) == []


def test_module_package_follows_the_installed_layout() -> None:
    assert module_package(ROOT / "schedule" / "scheduler.py") == "dagu.schedule"
    assert module_package(ROOT / "engine" / "__init__.py") == "dagu.engine"
    assert module_package(ROOT / "executors" / "ssh" / "client.py") == "dagu.executors.ssh"


# --------------------------------------------------------------------------
# The tree
# --------------------------------------------------------------------------


# The packages below the service layer: they run plans and keep state, and never reach up.
BELOW_SERVICE = ("engine", "process", "store", "launch", "queues", "schedule", "executors", "settings", "spec",
                 "distributed")
RUNTIME = ("engine", "process", "store", "launch", "queues", "schedule", "settings", "distributed")
FRONT_ENDS = ("cli", "cli_run", "cli_format", "cli_parser", "web", "__main__")


def package_of(path: Path) -> str:
    """The top-level part of dagu a source file belongs to: engine/x.py -> engine, cli.py -> cli."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return parts[0] if len(parts) > 1 else parts[0]


def package_graph() -> dict[str, dict[str, list[str]]]:
    """{package: {imported package: ['file:line', ...]}} over every dagu source file but tests/ and build/."""
    graph: dict[str, dict[str, list[str]]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in ("tests", "build", ".venv", "dist") or rel.parts[0].startswith("."):
            continue
        source_pkg = package_of(path)
        edges = graph.setdefault(source_pkg, {})
        for line, module in imported_modules(path.read_text(encoding="utf-8"), module_package(path), str(rel)):
            parts = module.split(".")
            if parts[0] != PACKAGE or len(parts) < 2:
                continue
            target = parts[1]
            if target == source_pkg or not ((ROOT / target).is_dir() or (ROOT / f"{target}.py").is_file()):
                continue  # `from dagu import __version__` names the package itself
            edges.setdefault(target, []).append(f"{rel}:{line}")
    return graph


def arrows(graph: dict[str, dict[str, list[str]]], sources: tuple[str, ...], targets: tuple[str, ...]) -> list[str]:
    return sorted(f"{src} -> {dst} ({', '.join(sorted(set(where)))})" for src in sources
                  for dst, where in graph.get(src, {}).items() if dst in targets)


def test_the_checked_folders_exist() -> None:
    for folder in (*RUNTIME, "executors", "web", "service", "compiler"):
        if folder != "settings":
            assert (ROOT / folder / "__init__.py").is_file(), folder
    assert (ROOT / "settings.py").is_file()


def test_the_package_graph_has_no_cycle() -> None:
    import networkx as nx

    graph = nx.DiGraph([(src, dst) for src, edges in package_graph().items() for dst in edges])
    assert sorted(sorted(cycle) for cycle in nx.simple_cycles(graph)) == []


def test_nothing_below_the_service_layer_imports_a_front_end_or_the_compiler() -> None:
    assert arrows(package_graph(), BELOW_SERVICE, (*FRONT_ENDS, "compiler", "service")) == []


def test_the_service_layer_never_imports_a_front_end() -> None:
    assert arrows(package_graph(), ("service",), FRONT_ENDS) == []


def test_executors_never_import_the_engine() -> None:
    assert arrows(package_graph(), ("executors",), ("engine", "schedule", "queues")) == []


def test_the_graph_checker_sees_a_real_arrow() -> None:
    graph = package_graph()
    assert "spec" in graph.get("engine", {}), "the engine reads plans: the checker must see that import"


def test_runtime_executors_and_web_do_not_import_compiler_libraries() -> None:
    folders = [f for f in (*RUNTIME, "executors", "web") if (ROOT / f).is_dir()]
    files = sources_under(*folders) + [ROOT / "settings.py"]
    assert violations(files, COMPILER_LIBRARIES) == []


def test_plan_module_imports_only_the_standard_library() -> None:
    """The plan module and its one helper, dagu.spec.records (cheap dataclasses), need nothing else."""
    for name, allowed in (("plan.py", {"dagu.spec.records", "dagu.spec.records.dataclass"}), ("records.py", set())):
        path = ROOT / "spec" / name
        modules = {m for _line, m in imported_modules(path.read_text(encoding="utf-8"), "dagu.spec", str(path))}
        assert modules, "no imports found: is the checker reading the right file?"
        assert sorted(m for m in modules - allowed if m.split(".")[0] not in sys.stdlib_module_names) == [], name


# --------------------------------------------------------------------------
# What `dagu validate` actually loads
# --------------------------------------------------------------------------


def imported_by_importtime(stderr: str) -> set[str]:
    """Module names from `python -X importtime` output ("import time: self | cumulative | name")."""
    names = set()
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        fields = line.split("|")
        if len(fields) != 3:
            continue
        name = fields[2].strip()
        if name and name != "imported package":
            names.add(name)
    return names


def test_importtime_parser() -> None:
    stderr = (
        "import time: self [us] | cumulative | imported package\n"
        "import time:       120 |        120 |   _io\n"
        "import time:       300 |       2100 |     urllib3.util\n"
        "import time:       900 |       4000 | requests\n"
        "Success: no issues found in 1 file\n"
    )
    assert imported_by_importtime(stderr) == {"_io", "urllib3.util", "requests"}


def test_validate_does_not_load_heavy_clients(tmp_path: Path) -> None:
    workflow = tmp_path / "small.yaml"
    workflow.write_text("steps:\n  - id: hello\n    command: echo hello\n  - echo ${hello.exit_code}\n",
                        encoding="utf-8")
    code = f"import sys; from dagu.cli import main; sys.exit(main(['validate', {str(workflow)!r}]))"
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    modules = imported_by_importtime(proc.stderr)
    assert "dagu.cli" in modules and any(m.startswith("dagu.compiler") for m in modules)
    assert sorted(m for m in modules if m.split(".")[0] in HEAVY_CLIENTS) == []


def test_every_dataclass_of_ours_is_the_cheap_one() -> None:
    """`dataclasses.dataclass` compiles its methods at import (0.3-0.5 ms a class, a fifth of a small
    run's start-up): our modules take `dataclass` from dagu.spec.records, which asks it for none."""
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in ("tests", "build", ".venv", "dist") or rel.parts[0].startswith(".") \
                or rel == Path("spec/records.py"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "dataclasses" \
                    and any(alias.name == "dataclass" for alias in node.names):
                offenders.append(f"{rel}:{node.lineno}")
            elif isinstance(node, ast.Attribute) and node.attr == "dataclass" \
                    and isinstance(node.value, ast.Name) and node.value.id == "dataclasses":
                offenders.append(f"{rel}:{node.lineno}")
    assert offenders == []
