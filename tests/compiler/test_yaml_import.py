"""compiler/yaml_import.py: PyYAML's patterns are compiled on first use, which dagu's loader never
makes, and PyYAML's own loading (YAML 1.1 resolvers, the reader's check) behaves exactly as before."""

from __future__ import annotations

import subprocess
import sys

DOCUMENT = "a: yes\nb: 2001-12-14 21:59:43.10 -05:00\nc: 0x1F\nd: 1_000.5\ne: ~\nf: .inf\ng: 0o17\n"


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_compiler_loads_a_workflow_without_compiling_pyyamls_patterns(tmp_path) -> None:
    (tmp_path / "w.yaml").write_text("steps:\n  - id: a\n    command: echo yes 0x1F 2001-12-14\n")
    probe = (
        "import re, sys\n"
        "from dagu.compiler import yaml_import\n"
        "from dagu.compiler.pipeline import compile_file\n"
        f"assert compile_file({str(tmp_path / 'w.yaml')!r}).ok\n"
        "import yaml.resolver, yaml.reader, yaml.constructor\n"
        "patterns = [p for rules in yaml.resolver.Resolver.yaml_implicit_resolvers.values() for _, p in rules]\n"
        "patterns += [yaml.reader.Reader.NON_PRINTABLE, yaml.constructor.SafeConstructor.timestamp_regexp]\n"
        "print(len(patterns) > 10, all(isinstance(p, yaml_import.CompiledOnFirstUse) for p in patterns),\n"
        "      any(p.compiled for p in patterns))\n"
    )
    assert _run(probe).split() == ["True", "True", "False"]


def test_pyyamls_own_loading_is_unchanged() -> None:
    """The same document through yaml.safe_load with and without dagu's import: YAML 1.1 scalars,
    timestamps, and the reader's refusal of a control character."""
    check = (
        f"print(repr(yaml.safe_load({DOCUMENT!r})))\n"
        "try:\n    yaml.safe_load('a: \\x07')\nexcept yaml.reader.ReaderError as exc:\n    print('refused', exc.character)\n"
    )
    plain = _run("import yaml\n" + check)
    ours = _run("from dagu.compiler.yaml_import import yaml\nimport yaml.reader\n" + check)
    assert ours == plain
    assert "True" in plain and "datetime.datetime(2001, 12, 14" in plain and "refused 7" in plain
