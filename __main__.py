"""`python -m dagu` is the same entry point as the `dagu` command."""

from dagu.cli import run

run()
