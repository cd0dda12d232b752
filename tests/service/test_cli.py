"""The command line as users see it: internal commands stay out of `dagu --help`."""

from __future__ import annotations

import re

from tests.runtime.conftest import Env

INTERNAL = ("zygote", "start-queued", "resume")


def test_help_lists_public_commands_only(env: Env) -> None:
    res = env.run("--help")
    assert res.returncode == 0
    listed = re.findall(r"^    ([a-z-]+)", res.stdout, re.MULTILINE)
    assert {"start", "stop", "retry", "approve", "push-back", "status"} <= set(listed)
    for name in INTERNAL:
        assert name not in listed and name not in res.stdout
    assert "SUPPRESS" not in res.stdout


def test_public_flags_of_the_service_commands_are_documented(env: Env) -> None:
    assert "--run-id" in env.run("stop", "--help").stdout
    assert "--step" in env.run("retry", "--help").stdout
    assert "--wait" in env.run("approve", "--help").stdout
