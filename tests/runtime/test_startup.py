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
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:4] == ["False", "(a, b=2) True", "True", "(a, b=2)"]
