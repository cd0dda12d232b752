"""Serving the app: waitress, a pure-Python production WSGI server.

Why waitress: it has no C extension and no dependency, so PyInstaller freezes it as plain
modules and the one-file binary serves exactly as the installed package does; it is
multi-threaded with a fixed pool (a bounded number of threads, which the event streams share,
see web/events.py), streams responses without buffering them (server-sent events), and runs on
every platform Python does.
"""

from __future__ import annotations

from typing import Any, Callable

THREADS = 16  # requests served at once; web/events.py keeps half of them for non-stream requests


def serve(app: Any, host: str, port: int, ready: Callable[[str, int], None] | None = None) -> None:
    """Serve `app` until the process is told to stop (SIGINT/SIGTERM end waitress's loop)."""
    from waitress.server import create_server

    server = create_server(app, host=host, port=port, threads=THREADS, ident="dagu",
                           channel_timeout=60, connection_limit=200)
    if ready is not None:
        ready(server.effective_host, server.effective_port)
    try:
        server.run()
    finally:
        server.close()
