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


class CannotListen(Exception):
    """The address cannot be listened on (in use, not this host's, a privileged port): a fault of
    the request, which starting again would not cure."""


def _why_not(host: str, port: int, exc: OSError) -> str:
    import errno

    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (f"{where} is already in use (another `dagu server` or `dagu start-all`, or another "
                "program: `ss -ltnp` shows which); stop it or choose another --port")
    if exc.errno == errno.EACCES:
        return f"{where}: permission denied (ports below 1024 need privileges); choose a --port above 1023"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{where}: {host} is not an address of this host; choose another --host"
    return f"cannot listen on {where}: {exc.strerror or exc}"


def serve(app: Any, host: str, port: int, ready: Callable[[str, int], None] | None = None) -> None:
    """Serve `app` until the process is told to stop (SIGINT/SIGTERM end waitress's loop)."""
    import socket

    from waitress.server import create_server

    bound_malloc()
    try:
        server = create_server(app, host=host, port=port, threads=THREADS, ident="dagu",
                               channel_timeout=60, connection_limit=200)
    except socket.gaierror as exc:
        raise CannotListen(f"{host}:{port}: {host} is not a known host name ({exc.strerror})") from None
    except OSError as exc:
        raise CannotListen(_why_not(host, port, exc)) from None
    context = app.extensions.get("dagu")
    if context is not None:
        threading.Thread(target=context.warm, name="dagu-web-warm", daemon=True).start()
    if ready is not None:
        ready(server.effective_host, server.effective_port)
    try:
        server.run()
    finally:
        server.close()
