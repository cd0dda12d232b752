"""Time as an object, so the scheduler's tests move it by hand instead of waiting."""

from __future__ import annotations

import time


class SystemClock:
    """The real clock: Unix time, and a sleep that really sleeps."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class FakeClock:
    """A clock that only moves when told to (or when someone sleeps on it)."""

    def __init__(self, now: float) -> None:
        self.t = float(now)

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        self.t += seconds
