"""The garbage collector while a command starts: what `dagu` imports is never garbage.

Importing `dagu start`'s modules allocates some 16,000 objects, none of which
is ever freed, and the cyclic collector walks them again and again as they
come: 2 ms of a 10-step run's start-up (issue 17).  So the CLI raises the
threshold of the youngest generation while a command sets itself up, and
whoever then runs for long (the supervisor, before its first step) puts the
threshold back and moves everything alive so far into the permanent
generation (`gc.freeze`), which later collections skip.  A command that never
says it is set up keeps collecting, only less often: nothing can grow without
bound.
"""

from __future__ import annotations

import gc

START_UP_THRESHOLD = 100_000  # allocations before a young collection, while setting up


def setting_up() -> None:
    """Collect rarely from now on (cli.main, before a command imports anything)."""
    gc.set_threshold(START_UP_THRESHOLD, *gc.get_threshold()[1:])


def set_up(default_young: int = 700) -> None:
    """Start-up is over: what is alive now stays (frozen); the usual thresholds again."""
    if gc.get_threshold()[0] == START_UP_THRESHOLD:
        gc.freeze()
        gc.set_threshold(default_young, *gc.get_threshold()[1:])
