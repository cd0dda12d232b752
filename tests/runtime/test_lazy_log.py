"""process/'s loggers: messages reach logging as before, and a run that logs nothing never imports it."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from dagu.process.lazy_log import LazyLogger


def test_a_message_reaches_the_named_logger(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="dagu.process.tree"):
        LazyLogger("dagu.process.tree").warning("cannot create cgroup %s (%s)", "/x", "No space left")
    assert [(r.name, r.getMessage()) for r in caplog.records] == \
        [("dagu.process.tree", "cannot create cgroup /x (No space left)")]


def test_importing_process_control_does_not_import_logging() -> None:
    code = ("import sys, dagu.process.tree, dagu.process.accounting, dagu.process.limits, "
            "dagu.process.watchdog, dagu.process.spawn; print('logging' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"
