"""The layers stay apart: the runtime, the executors and the web read plans, never YAML.

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
    """The package a source file's relative imports start from, e.g. runtime/x.py -> dagu.runtime."""
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
    ("import dagu.compiler.pipeline as p\n", "dagu.runtime", "dagu.compiler.pipeline"),
    ("from dagu.compiler import compile_file\n", "dagu.runtime", "dagu.compiler"),
    ("from dagu import compiler\n", "dagu.executors", "dagu.compiler"),
    ("from ..compiler.pipeline import compile_file\n", "dagu.runtime", "dagu.compiler.pipeline"),
    ("from .. import compiler\n", "dagu.runtime", "dagu.compiler"),
    ("from ...compiler import x\n", "dagu.executors.ssh", "dagu.compiler"),
    ("import importlib\nm = importlib.import_module('dagu.compiler')\n", "dagu.runtime", "dagu.compiler"),
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
    assert forbidden_imports(source, "dagu.runtime", COMPILER_LIBRARIES + COMPILER) == []


def test_module_package_follows_the_installed_layout() -> None:
    assert module_package(ROOT / "runtime" / "scheduler.py") == "dagu.runtime"
    assert module_package(ROOT / "runtime" / "__init__.py") == "dagu.runtime"
    assert module_package(ROOT / "executors" / "ssh" / "client.py") == "dagu.executors.ssh"


# --------------------------------------------------------------------------
# The tree
# --------------------------------------------------------------------------


def test_the_checked_folders_exist() -> None:
    for folder in ("runtime", "executors", "web"):
        assert (ROOT / folder / "__init__.py").is_file(), folder


def test_runtime_executors_and_web_do_not_import_compiler_libraries() -> None:
    assert violations(sources_under("runtime", "executors", "web"), COMPILER_LIBRARIES) == []


def test_runtime_and_executors_do_not_import_the_compiler() -> None:
    assert violations(sources_under("runtime", "executors"), COMPILER) == []


def test_plan_module_imports_only_the_standard_library() -> None:
    path = ROOT / "spec" / "plan.py"
    modules = {m for _line, m in imported_modules(path.read_text(encoding="utf-8"), "dagu.spec", str(path))}
    assert modules, "no imports found: is the checker reading the right file?"
    assert sorted(m for m in modules if m.split(".")[0] not in sys.stdlib_module_names) == []


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
