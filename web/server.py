"""Serving the app: waitress, a pure-Python production WSGI server.

Why waitress: it has no C extension and no dependency, so PyInstaller freezes it as plain
modules and the one-file binary serves exactly as the installed package does; it is
multi-threaded with a fixed pool (a bounded number of threads, which the event streams share,
see web/events.py), streams responses without buffering them (server-sent events), and runs on
every platform Python does.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

THREADS = 72  # requests served at once: web/events.py's 64 streams, and 8 for everything else
MMAP_THRESHOLD = 128 * 1024  # buffers this large are mmap'ed, and given back when freed


def bound_malloc() -> None:
    """Keep the server's RSS flat under large responses (1 MiB log pages): glibc raises its mmap
    threshold after the first large free, after which such buffers come from each thread's heap
    arena and stay there (+30 MB over 200 log pages with 72 threads).  Fixing the threshold
    turns that off.  glibc only; elsewhere a no-op."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.mallopt(-3, MMAP_THRESHOLD)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def serve(app: Any, host: str, port: int, ready: Callable[[str, int], None] | None = None) -> None:
    """Serve `app` until the process is told to stop (SIGINT/SIGTERM end waitress's loop)."""
    from waitress.server import create_server

    bound_malloc()
    context = app.extensions.get("dagu")
    if context is not None:
        threading.Thread(target=context.warm, name="dagu-web-warm", daemon=True).start()
    server = create_server(app, host=host, port=port, threads=THREADS, ident="dagu",
                           channel_timeout=60, connection_limit=200)
    if ready is not None:
        ready(server.effective_host, server.effective_port)
    try:
        server.run()
    finally:
        server.close()
