"""Start a program as `subprocess.Popen` would, without Popen's Python around it.

The supervisor starts one process per step and reaps it itself (pidfd, wait4), so it needs the
pid and nothing else.  Popen spends ~0.1 ms of Python per process on top of the vfork+exec it
asks of `_posixsubprocess.fork_exec`: argument checks, stream juggling, an ExitStack, the
bookkeeping a Popen object keeps for its own wait().  On a chain of short steps that is a tenth
of the supervisor's time per step.

`start` passes fork_exec exactly what Popen passes for stdin=DEVNULL, two output descriptors,
`cwd`, `env`, start_new_session=True, close_fds=True, restore_signals=True and a preexec_fn
(so the child is the same: a session leader, /dev/null on stdin, no other descriptor, SIGPIPE
and SIGXFSZ back to their defaults), and raises what Popen raises when the exec fails.
fork_exec is CPython's private function, with the arguments of 3.11 (the frozen binary's
Python); on any other Python `start` is Popen.  tests/runtime/test_exec_child.py holds the two
side by side.
"""

from __future__ import annotations

import builtins
import os
import sys
from collections.abc import Callable

from dagu.process.fork import ForkedProcess

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    import subprocess
    from typing import Any

if sys.implementation.name == "cpython" and sys.version_info[:2] == (3, 11):
    from _posixsubprocess import fork_exec as _fork_exec
else:  # pragma: no cover - the argument list differs elsewhere
    _fork_exec = None


def start(argv: list[str], program: str, env: dict[str, str], cwd: str, stdout: int, stderr: int,
          preexec: Callable[[], None] | None = None, use_popen: bool = False,
          devnull: int | None = None) -> "subprocess.Popen | ForkedProcess":
    """Start `program` with `argv` (raises OSError as Popen would); the handle's `pid` and
    `returncode` are all the caller uses.  `preexec` runs in the child before the exec, as
    Popen's preexec_fn (and, as there, costs a full fork instead of a vfork).  `devnull`, an
    open /dev/null the caller keeps for its children's stdin, spares an open per child."""
    if _fork_exec is None or use_popen:
        import subprocess  # only here and for a child's failure: `dagu start` need not import it

        return subprocess.Popen(argv, executable=program, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                cwd=cwd, env=env, start_new_session=True, close_fds=True, preexec_fn=preexec)
    env_list = []
    for key, value in env.items():
        name = os.fsencode(key)
        if b"=" in name:
            raise ValueError("illegal environment variable name")
        env_list.append(name + b"=" + os.fsencode(value))
    stdin = devnull if devnull is not None else os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        errpipe_read, errpipe_write = os.pipe()  # the child writes why its exec failed; closed by exec
        try:
            try:
                pid = _fork_exec(argv, (os.fsencode(program),), True, (errpipe_write,), cwd, env_list,
                                 stdin, -1, -1, stdout, -1, stderr, errpipe_read, errpipe_write,
                                 True, True, -1, None, None, None, -1, preexec, True)
            finally:
                os.close(errpipe_write)
            failure = _read_failure(errpipe_read)
        finally:
            os.close(errpipe_read)
    finally:
        if devnull is None:
            os.close(stdin)
    if failure:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        raise _exception(failure, program, cwd)
    return ForkedProcess(pid)


def _read_failure(fd: int) -> bytes:
    data = bytearray()
    while part := os.read(fd, 50000):
        data += part
        if len(data) > 50000:
            break
    return bytes(data)


def _exception(data: bytes, program: str, cwd: str) -> Exception:
    """The exception Popen makes of the child's "ExceptionName:hex errno:description"."""
    import subprocess

    try:
        name, hex_errno, message_bytes = data.split(b":", 2)
        message = message_bytes.decode()
    except ValueError:
        return subprocess.SubprocessError(f"Bad exception data from child: {data!r}")
    kind: Any = getattr(builtins, name.decode("ascii"), subprocess.SubprocessError)
    if issubclass(kind, OSError) and hex_errno:
        number = int(hex_errno, 16)
        never_exec = message == "noexec"  # chdir(cwd) failed, before any exec
        text = os.strerror(number) if number else ("" if never_exec else message)
        return kind(number, text, cwd if never_exec else program)
    return kind(message)
