"""The executor tests run `dagu` as a user would (tests/runtime's Env) against real servers
(tests/servers.py); each server's fixture lives beside the tests of its step type."""

from __future__ import annotations

from tests.runtime.conftest import Env, env  # noqa: F401  (the fixture, shared)
