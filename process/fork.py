"""A child process that runs Python code of ours without a new interpreter: fork, and never exec.

Why: a sub-DAG run (a `call` step, a `parallel` item) is a whole supervisor, and starting it as a
fresh `dagu start` costs an interpreter start-up and dagu's imports (~140 ms of CPU) before its
first step.  The calling supervisor has all of that loaded already, so it forks and the child runs
the sub-run's supervision directly (~1 ms for the fork).  To the caller the child is exactly a
spawned step process: a session leader, in the step's cgroup, stdin from
/dev/null and its output in the step's log files (process/spawn.py registers, reaps and accounts
it by pid as any other).

What the child must not touch is what the caller's other threads may hold.  The supervisor runs
threads (the accounting sampler, the space watch, precondition checkers, the in-process pool) and
only the forking thread exists in the child, so every lock those threads held stays held there.
The rule this module and its callers keep:

- the child never uses an object of the caller: it builds its own store, journal, selector,
  sampler and pools, and leaves the caller's where they lie (it never returns up the caller's
  stack: it ends with `os._exit`, so no finalizer and no atexit handler of the caller runs);
- the locks the child does share are module-level ones, which CPython and the standard library
  re-initialise after a fork (the import lock, logging's, threading's, concurrent.futures');
- every descriptor the caller had open (its selector, pidfds, wake-up pipe, journal, run lock)
  is pointed at /dev/null rather than closed, so the caller's flock is released, its pipe is not
  written, and a stale file object that is ever finalised closes a /dev/null, never a
  descriptor the child opened since under the same number;
- probes whose answer depends on where the process sits (its own cgroup) are forgotten, so the
  child's step cgroups nest under the step cgroup it is in, as a spawned child's do: its steps
  die with it;
- the caller forks only while no in-process executor is running on its pool (such code is
  not ours and may hold any lock); otherwise the sub-run is spawned (engine/process_steps.py).

Signals that would stop the child are blocked across the fork and set to their defaults in the
child before they are unblocked: a stop that arrives in between ends the child, as it would end
a spawned `dagu` that had not yet installed its handlers, and never runs the caller's handler.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
from collections.abc import Callable

from dagu.process import limits, tree

_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD}
EXIT_INTERNAL = 3  # what `dagu` exits with on an internal error (cli.py)


class ForkedProcess:
    """The Popen-like handle of a forked child (`pid`, `returncode`), for process/spawn.Child."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None


def fork_child(entry: Callable[[], int], env: dict[str, str], cwd: str, stdout: int, stderr: int,
               preexec: Callable[[], None] | None) -> ForkedProcess:
    """Fork a child that becomes a session leader, runs `preexec` (joins the step's cgroup;
    None: nothing to join), takes `stdout`/`stderr` (descriptors) as fds 1 and 2, `env` as its
    environment and `cwd` as its directory, then exits with `entry()`'s return value.
    Raises OSError when the fork fails or `cwd` is not a directory (nothing was started)."""
    if not os.path.isdir(cwd):
        raise FileNotFoundError(2, "No such file or directory", cwd)
    for stream in (sys.stdout, sys.stderr):  # buffered output must not be written twice
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        pid = os.fork()
        if pid == 0:
            _child(entry, env, cwd, stdout, stderr, preexec, mask)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    return ForkedProcess(pid)


def _child(entry: Callable[[], int], env: dict[str, str], cwd: str, stdout: int, stderr: int,
           preexec: Callable[[], None] | None, mask: set[signal.Signals]) -> None:
    """In the fork: become the child `fork_child` describes, run `entry`, never return."""
    code = EXIT_INTERNAL
    gc.freeze()  # the child's collector never walks (and so never copies) the caller's objects
    try:
        os.setsid()
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a fresh interpreter
        signal.set_wakeup_fd(-1)
        if preexec is not None:
            preexec()
        _own_descriptors(stdout, stderr)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        _forget_placement()
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        code = entry()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        code = 130
    except BaseException as exc:  # noqa: B036 - never return into the caller's stack
        try:
            os.write(2, f"dagu: internal error: {type(exc).__name__}: {exc}\n".encode(errors="replace"))
        except OSError:
            pass
    finally:
        try:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
        except BaseException:  # noqa: B036
            pass
        os._exit(code if isinstance(code, int) and 0 <= code < 256 else 1)


def _own_descriptors(stdout: int, stderr: int) -> None:
    """stdin from /dev/null, stdout/stderr to the given files, and every other inherited
    descriptor replaced by /dev/null (see the module's note on why not closed)."""
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    os.dup2(null, 0)
    os.dup2(stdout, 1)
    os.dup2(stderr, 2)
    try:
        inherited = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc: close them (a stale file object could close a reused number)
        os.closerange(3, null)
        os.closerange(null + 1, os.sysconf("SC_OPEN_MAX"))
        return
    for fd in inherited:
        if fd > 2 and fd != null:
            try:
                os.dup2(null, fd, inheritable=False)
            except OSError:
                pass
    os.close(null)


def _forget_placement() -> None:
    """Probes answered for the caller's place in the cgroup tree: the child sits elsewhere."""
    tree.probe.cache_clear()
    limits.probe_cgroup_v1.cache_clear()
    limits.probe_cgroup_v2.cache_clear()
