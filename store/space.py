"""Free space of the data dir while a run records its state: a watch, and a reserve to write the end with.

A step that fills the disk and keeps running writes no event, so the
supervisor would not try a write (and fail) until the step ends, maybe hours
later, and then could not record why the run failed.  Two small things fix
that:

- `SpaceWatch` looks at the free space of the run's filesystem once a second
  (one statvfs) and calls back once when it is nearly gone, so the run stops
  within seconds;
- `SpaceReserve` holds a small preallocated file in the run's folder; freeing
  it when the disk is full gives the run room for its last events (which
  steps failed, and why), so the record says "disk full", not "interrupted".
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

LOW_SPACE_BYTES = 16 * 1024  # fewer free bytes than this: the disk counts as full
RESERVE_BYTES = 64 * 1024  # enough for the final events of a run (a few hundred bytes each)
RESERVE_NAME = ".space-reserve"
CHECK_EVERY_SEC = 1.0


def free_bytes(path: str) -> int:
    """Bytes this process may still write on the filesystem of `path` (root may use the reserved blocks)."""
    st = os.statvfs(path)
    blocks = st.f_bfree if os.geteuid() == 0 else st.f_bavail
    return blocks * st.f_frsize


class SpaceReserve:
    """A preallocated file in a run's folder, released when the disk is full to write the run's end."""

    def __init__(self, folder: str, size: int = RESERVE_BYTES) -> None:
        self.path = os.path.join(folder, RESERVE_NAME)
        self.held = False
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, size)
            finally:
                os.close(fd)
            self.held = True
        except OSError:  # no room even for this: the run's first write will say so
            self.release()

    def release(self) -> bool:
        """Free the reserve; whether there was one to free."""
        held, self.held = self.held, False
        try:
            os.unlink(self.path)
        except OSError:
            pass
        return held


class SpaceWatch:
    """Calls `on_full(free_bytes)` once, from its own thread, when the filesystem of `path` has fewer
    than `low` bytes free; checks every `every` seconds until `stop`."""

    def __init__(self, path: str, on_full: Callable[[int], None], low: int = LOW_SPACE_BYTES,
                 every: float = CHECK_EVERY_SEC) -> None:
        self.path = path
        self.on_full = on_full
        self.low = low
        self.every = every
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="space-watch", daemon=True)

    def start(self) -> "SpaceWatch":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.every * 2)

    def _watch(self) -> None:
        while not self._stopped.wait(self.every):
            try:
                free = free_bytes(self.path)
            except OSError:
                continue  # the folder vanished: the run's next write says so
            if free < self.low:
                self.on_full(free)
                return
