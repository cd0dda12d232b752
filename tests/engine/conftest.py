"""The engine tests that need real runs use the runtime tests' `Env` (a work dir and a DAGU_HOME)."""

from tests.runtime.conftest import env  # noqa: F401  (a fixture, found by name)
