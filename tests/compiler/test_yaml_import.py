"""compiler/yaml_import.py seeds `re`'s cache with a pattern that must match exactly what PyYAML's would."""

from __future__ import annotations

import ast
import re._compiler
import subprocess
import sys

import pytest
import yaml.reader

from dagu.compiler import yaml_import


def test_the_seeded_pattern_matches_the_same_characters_as_pyyamls() -> None:
    every_code_point = "".join(map(chr, range(sys.maxunicode + 1)))
    theirs = re._compiler.compile(yaml_import.PYYAML_NON_PRINTABLE, 0)  # compiled afresh, not from the cache
    ours = re.compile(yaml_import.SAME_SET)
    found = ours.findall(every_code_point)
    assert found == theirs.findall(every_code_point)
    assert len(found) == 29 + 1 + 31 + 2048 + 2, "controls but tab/LF/CR, DEL, C1 but NEL, surrogates, FFFE/FFFF"


def test_the_seed_is_under_the_text_pyyaml_compiles() -> None:
    """If PyYAML changed its pattern, the seed would go unused: this says so."""
    tree = ast.parse(open(yaml.reader.__file__, encoding="utf-8").read())
    sources = [node.value.args[0].value for node in ast.walk(tree)
               if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "NON_PRINTABLE" for t in node.targets)]
    assert sources == [yaml_import.PYYAML_NON_PRINTABLE]


def test_a_fresh_compiler_uses_the_seed() -> None:
    probe = ("import dagu.compiler.loader, yaml.reader; from dagu.compiler import yaml_import as y; "
             "print(yaml.reader.Reader.NON_PRINTABLE.pattern == y.SAME_SET)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "True", done.stderr
    with pytest.raises(yaml.reader.ReaderError, match="#x0007"):  # still refused, by either pattern
        yaml.reader.Reader("a: \x07")
