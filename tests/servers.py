"""Starting real servers for tests on 127.0.0.1: a free port, waiting for it, and stopping by pid.

Why one helper: every executor test talks to a real server (sshd, redis-server, PostgreSQL, an SMTP
sink, dockerd, ...).  Each is started here as a child process of the test, on a port nobody else
holds, and ended by its own pid, never by name (`pkill -f` could end someone else's server).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pytest


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (bind to 0 and read it back)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 20, proc: subprocess.Popen | None = None) -> None:
    """Wait until something accepts on 127.0.0.1:port; fail early if `proc` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")
            time.sleep(0.05)


def need(program: str) -> str:
    """The path of a server program, or skip the test naming what to install."""
    found = shutil.which(program) or next((p for p in (f"/usr/sbin/{program}", f"/usr/bin/{program}")
                                           if os.access(p, os.X_OK)), None)
    if not found:
        pytest.skip(f"{program} is not installed (.ci/run installs it; see ../shared/components.md)")
    return found


@dataclass
class Server:
    """A server process this test started; `stop` ends it (and only it) by pid."""

    proc: subprocess.Popen
    port: int
    log: Path

    @classmethod
    def start(cls, argv: Sequence[str], port: int, log: Path, *, env: dict | None = None,
              timeout: float = 20, **popen: object) -> "Server":
        out = open(log, "ab")
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, **popen)  # type: ignore[arg-type]
        out.close()
        server = cls(proc, port, log)
        try:
            wait_port(port, timeout, proc)
        except Exception:
            server.stop()
            raise RuntimeError(f"{argv[0]} did not start: {log.read_text(errors='replace')[-2000:]}") from None
        return server

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: the server and its workers
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
