"""The store tests run `dagu` as real processes, like the runtime tests (tests/runtime/conftest.py)."""

from tests.runtime.conftest import Env, env  # noqa: F401 - the fixture, shared

__all__ = ["Env", "env"]
