"""Command steps: a command line, a list of commands, or a script, run by a shell.

Like upstream Dagu, the default shell is `sh` with errexit (`-e`), so a
multi-line command stops at its first failing line instead of carrying on; a
POSIX shell named without arguments (`shell: bash`) gets `-e` too.  A shell
given with arguments is used exactly as written.
"""

from __future__ import annotations

import os
import shlex

from dagu.executors.base import JobContext, JobResult, Launch
from dagu.engine.evaluate import render

POSIX_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash", "mksh", "busybox"})
DEFAULT_SHELL = ("sh",)


def shell_argv(shell: tuple[str, ...]) -> list[str]:
    """The shell's argv before the script: errexit for a bare POSIX shell."""
    words = list(shell or DEFAULT_SHELL)
    if len(words) == 1 and os.path.basename(words[0]) in POSIX_SHELLS:
        words.append("-e")
    return words


class CommandJob:
    def __init__(self, ctx: JobContext) -> None:
        self._ctx = ctx
        self._launch = self._build(ctx)
        self._started = False
        self._code: int | None = None

    @staticmethod
    def _build(ctx: JobContext) -> Launch:
        step = ctx.step
        shell = shell_argv(step.shell or ctx.dag.shell)
        commands = [render(c, ctx.scope, True) for c in step.command]
        if step.script is not None:
            path = os.path.join(ctx.scratch, f"{step.id}.{ctx.attempt}.script")
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(render(step.script, ctx.scope, True))
            if commands:  # `command` names the interpreter for the script
                argv = shlex.split(commands[0]) + [path]
            else:
                argv = [*shell, path]
        else:
            argv = [*shell, "-c", "\n".join(commands)]
        return Launch(argv=argv, env=ctx.env, cwd=ctx.cwd, stdout=ctx.stdout, stderr=ctx.stderr)

    def launches(self) -> list[Launch]:
        if self._started:
            return []
        self._started = True
        return [self._launch]

    def exited(self, launch: Launch, returncode: int) -> None:
        self._code = returncode

    def done(self) -> bool:
        return self._code is not None

    def result(self) -> JobResult:
        return JobResult(exit_code=self._code if self._code is not None else -1)


def make_job(ctx: JobContext) -> CommandJob:
    return CommandJob(ctx)
