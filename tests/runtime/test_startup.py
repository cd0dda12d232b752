"""dagu/startup.py: modules deferred to their first use; the collector runs rarely while a command
sets itself up, as usual after."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator

import pytest

from dagu import cli, startup


@pytest.fixture(autouse=True)
def usual_collector() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)
    gc.unfreeze()


def test_set_up_freezes_what_start_up_made_and_restores_the_pace() -> None:
    startup.setting_up()
    assert gc.get_threshold()[0] == startup.START_UP_THRESHOLD
    made_at_start_up = [object() for _ in range(10)]
    startup.set_up()
    assert gc.get_threshold()[0] == 700
    assert gc.get_freeze_count() >= len(made_at_start_up), "start-up's objects are left to the permanent generation"
    frozen = gc.get_freeze_count()
    startup.set_up()  # a second call (a forked sub-run's supervisor) changes nothing
    assert gc.get_freeze_count() == frozen and gc.get_threshold()[0] == 700


def test_only_commands_that_end_collect_rarely_while_they_start(capsys: pytest.CaptureFixture[str]) -> None:
    gc.set_threshold(700, *gc.get_threshold()[1:])
    assert cli.main(["scheduler", "--help"]) == 0  # serves until stopped: the usual pace from the start
    assert gc.get_threshold()[0] == 700
    assert cli.main(["validate", "--help"]) == 0
    assert gc.get_threshold()[0] == startup.START_UP_THRESHOLD
    capsys.readouterr()


def test_a_deferred_module_loads_whole_at_its_first_use() -> None:
    """In a fresh interpreter (this one has inspect already): importing a deferred module gives the
    stand-in and loads nothing; its first attribute read loads the real module, which then serves
    every later import, and code that imported the stand-in keeps working through it."""
    probe = (
        "import sys; from dagu import startup; startup.defer_modules()\n"
        "import dataclasses, inspect\n"
        "print('ast' in sys.modules)\n"
        "def f(a, b=2): pass\n"
        "print(inspect.signature(f), 'ast' in sys.modules)\n"
        "import inspect as again; print(again is sys.modules['inspect'] and again is not inspect)\n"
        "print(dataclasses.inspect.signature(f))\n"
        "print('__getattr__' in vars(inspect), inspect.Signature is again.Signature)\n"
        "import yaml.constructor, base64\n"
        "print(type(yaml.constructor.base64).__name__, 'b64encode' in vars(base64), '_struct' in sys.modules)\n"
        "print(yaml.safe_load('!!binary aGk='), 'b64encode' in vars(yaml.constructor.base64))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:7] == [
        "False", "(a, b=2) True", "True", "(a, b=2)",
        "False True",  # the stand-in now holds the real module's names: read directly, no lookup
        "module False False",  # PyYAML imported base64's stand-in; nothing of it loaded yet
        "b'hi' True"]


def test_argparse_needs_neither_gettext_nor_locale_while_no_catalog_can_exist(tmp_path) -> None:
    """argparse's words come back as written, without gettext's lookups, where the default
    domain's catalog directory is missing; once gettext itself is used, or where that directory
    exists, the real module answers (the probe binds a catalog and sees argparse translated)."""
    probe = (
        "import os, sys, argparse\n"
        "print('gettext' in vars(sys.modules['gettext']) and 'translation' not in vars(sys.modules['gettext']),"
        " 'locale' in sys.modules)\n"
        "parser = argparse.ArgumentParser(prog='p'); parser.add_argument('--n', type=int)\n"
        "print(parser.format_help().splitlines()[2], parser.parse_args(['--n', '3']).n, 'locale' in sys.modules)\n"
        "import gettext\n"
        "print(gettext.NullTranslations is sys.modules['gettext'].NullTranslations, 'locale' in sys.modules)\n"
        "print(argparse._('options'))\n"
    )
    prelude = "import sys; from dagu import startup; startup.defer_modules()\n"
    done = subprocess.run([sys.executable, "-c", prelude + probe], capture_output=True, text=True, timeout=60,
                          env={**__import__("os").environ, "LANG": "C.UTF-8"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["True False", "options: 3 False", "True False", "options"]

    # a catalog where the default domain looks: the real gettext is used from the first call
    messages = tmp_path / "share" / "locale" / "xx" / "LC_MESSAGES"
    messages.mkdir(parents=True)
    (messages / "messages.mo").write_bytes(_catalog({"options": "Optionen"}))
    moved = f"import sys; sys.base_prefix = {str(tmp_path)!r}\n"
    done = subprocess.run([sys.executable, "-c", moved + prelude + "import argparse\nprint(argparse._('options'))\n"],
                          capture_output=True, text=True, timeout=60, env={**__import__("os").environ, "LANGUAGE": "xx"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Optionen"


def _catalog(translations: dict[str, str]) -> bytes:
    """A GNU .mo file (the format gettext reads) with these messages."""
    import struct

    items = sorted(translations.items())
    ids = b"".join(k.encode() + b"\0" for k, _ in items)
    strs = b"".join(v.encode() + b"\0" for _, v in items)
    count = len(items)
    start = 7 * 4 + 16 * count
    offsets, position = [], 0
    for key, _ in items:
        offsets += [len(key.encode()), start + position]
        position += len(key.encode()) + 1
    value_offsets, position = [], 0
    for _, value in items:
        value_offsets += [len(value.encode()), start + len(ids) + position]
        position += len(value.encode()) + 1
    header = struct.pack("Iiiiiii", 0x950412DE, 0, count, 7 * 4, 7 * 4 + 8 * count, 0, 0)
    return header + struct.pack(f"{2 * count}i", *offsets) + struct.pack(f"{2 * count}i", *value_offsets) + ids + strs
