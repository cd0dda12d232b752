"""dagu/startup.py: the collector runs rarely while a command sets itself up, as usual after."""

from __future__ import annotations

import gc
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
