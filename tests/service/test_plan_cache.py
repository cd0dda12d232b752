"""`dagu start FILE` reuses the plan compiled from FILE while nothing it was compiled from changed,
and never runs a stale one: each kind of input (the file, base.yaml, a called file, a dotenv file,
DAGU_BASE_CONFIG) changed makes the next start compile again.  Whether a start compiled is read from
`python -X importtime` of the real process: a reuse imports neither the compiler nor YAML."""

from __future__ import annotations

import subprocess
import sys

from tests.runtime.conftest import Env

MAIN = """
    steps:
      - id: greet
        command: echo ${GREETING} >> out.txt
    """


def start(env: Env, *args: str, extra: dict | None = None) -> tuple[subprocess.CompletedProcess, bool, set[str]]:
    """Run `dagu start -q FILE` for real; (the process, whether it imported the compiler, the modules
    it imported after `site`: an editable install's finder imports pathlib and more there)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "dagu", "start", "-q", *args], cwd=env.dir,
                          env={**env.env, **(extra or {})}, capture_output=True, text=True, timeout=60)
    lines = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    after_site = next(i for i, line in enumerate(lines) if line.endswith("| site")) + 1
    imported = {line.rsplit("|", 1)[1].strip() for line in lines[after_site:]}
    assert done.returncode == 0, done.stderr[-2000:]
    compiled = "dagu.compiler.pipeline" in imported
    assert compiled == ("yaml" in imported), "YAML is read by the compiler alone"
    return done, compiled, imported


def out(env: Env) -> list[str]:
    return (env.dir / "out.txt").read_text().splitlines()


def test_unchanged_file_reuses_its_plan_without_the_compiler_or_yaml(env: Env) -> None:
    env.write("main.yaml", MAIN.replace("${GREETING}", "hello"))
    assert start(env, "main.yaml")[1] is True
    assert start(env, "main.yaml")[1] is False
    assert start(env, str(env.dir / "main.yaml"))[1] is False  # one entry per file, however it is named
    assert out(env) == ["hello"] * 3
    assert len(list((env.home / "plans" / "cache").iterdir())) == 1


def test_a_start_loads_neither_typing_nor_inspect(env: Env) -> None:
    """What a small run's start-up is kept from (issue 17), whether it compiles or reuses the plan:
    typing (the annotations are for type checkers only), inspect with ast, dis and tokenize
    (dataclasses imports it for a docstring that dagu.spec.records writes itself), ipaddress
    (urllib.parse's, for URLs with a bracketed host)."""
    env.write("main.yaml", MAIN.replace("${GREETING}", "hello"))
    for should_compile in (True, False):
        _done, compiled, imported = start(env, "main.yaml")
        assert compiled is should_compile and "dagu.engine.supervisor" in imported, "the probe sees a real run"
        assert sorted(imported & {"typing", "inspect", "ast", "dis", "tokenize", "ipaddress"}) == []
    assert out(env) == ["hello", "hello"]


def test_edited_workflow_is_compiled_again(env: Env) -> None:
    env.write("main.yaml", MAIN.replace("${GREETING}", "one"))
    start(env, "main.yaml")
    env.write("main.yaml", MAIN.replace("${GREETING}", "two"))
    assert start(env, "main.yaml")[1] is True
    assert start(env, "main.yaml")[1] is False
    assert out(env) == ["one", "two", "two"]


def test_edited_or_new_base_config_is_compiled_again(env: Env) -> None:
    env.write("main.yaml", MAIN)
    start(env, "main.yaml")  # no base.yaml: GREETING is empty
    env.write("base.yaml", "env:\n  - GREETING: one\n")
    assert start(env, "main.yaml")[1] is True
    assert start(env, "main.yaml")[1] is False
    env.write("base.yaml", "env:\n  - GREETING: two\n")
    assert start(env, "main.yaml")[1] is True
    assert out(env) == ["", "one", "one", "two"]


def test_edited_called_file_is_compiled_again(env: Env) -> None:
    env.write("main.yaml", "steps:\n  - id: c\n    call: child\n")
    env.write("child.yaml", MAIN.replace("${GREETING}", "one"))
    start(env, "main.yaml")
    assert start(env, "main.yaml")[1] is False
    env.write("child.yaml", MAIN.replace("${GREETING}", "two"))
    assert start(env, "main.yaml")[1] is True
    assert out(env) == ["one", "one", "two"]


def test_dotenv_names_changed_are_compiled_again(env: Env) -> None:
    env.write("main.yaml", MAIN)
    first, _, _ = start(env, "main.yaml")
    assert "'GREETING' is not defined" in first.stderr
    hit, compiled, _ = start(env, "main.yaml")
    assert compiled is False and "'GREETING' is not defined" in hit.stderr  # the warnings are kept
    env.write(".env", "GREETING=from-dotenv\n")
    done, compiled, _ = start(env, "main.yaml")
    assert compiled is True and "is not defined" not in done.stderr
    assert start(env, "main.yaml")[1] is False
    assert out(env)[-2:] == ["from-dotenv", "from-dotenv"]


def test_base_config_variable_changed_is_compiled_again(env: Env) -> None:
    env.write("main.yaml", MAIN)
    env.write("other-base.yaml", "env:\n  - GREETING: other\n")
    start(env, "main.yaml")
    assert start(env, "main.yaml", extra={"DAGU_BASE_CONFIG": str(env.dir / "other-base.yaml")})[1] is True
    assert out(env) == ["", "other"]


def test_damaged_entry_is_compiled_again_without_an_error(env: Env) -> None:
    env.write("main.yaml", MAIN.replace("${GREETING}", "hello"))
    start(env, "main.yaml")
    (entry,) = (env.home / "plans" / "cache").iterdir()
    whole = entry.read_text()
    header, plan_text = whole.split("\n", 1)
    # what a power loss can leave of an entry written without fsync: the new header and length, but
    # a block of the plan text from an earlier file there (still JSON: only the checksum tells)
    assert plan_text.count("hello") == 1
    torn = header + "\n" + plan_text.replace("hello", "jello")
    assert len(torn) == len(whole)
    for damage in ("{not json", whole[:-40], "", torn):
        entry.write_text(damage)
        done, compiled, _ = start(env, "main.yaml")
        said = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
        assert compiled is True and said == []
        assert start(env, "main.yaml")[1] is False  # rewritten whole
    assert out(env) == ["hello"] * 9


def test_commands_naming_a_workflow_file_use_its_cached_plan(env: Env) -> None:
    env.write("main.yaml", "name: greeter\nsteps:\n  - id: greet\n    command: echo hello\n")
    start(env, "main.yaml")
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "dagu", "history", "main.yaml"], cwd=env.dir,
                          env=env.env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "succeeded" in done.stdout
    assert "dagu.compiler.pipeline" not in done.stderr and "| yaml" not in done.stderr


def test_a_file_with_a_byte_order_mark_is_reused_and_its_edit_seen(env: Env) -> None:
    """The compiler records the digest of the file's text without its BOM; the reuse check hashes
    the bytes the same way."""
    (env.dir / "bom.yaml").write_bytes(b"\xef\xbb\xbf" + MAIN.replace("${GREETING}", "hi").encode())
    assert start(env, "bom.yaml")[1] is True
    assert start(env, "bom.yaml")[1] is False
    (env.dir / "bom.yaml").write_bytes(b"\xef\xbb\xbf" + MAIN.replace("${GREETING}", "ho").encode())
    assert start(env, "bom.yaml")[1] is True
    assert out(env) == ["hi", "hi", "ho"]
