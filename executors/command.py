"""Command steps: a command line, a list of commands, or a script, run by a shell.

Like upstream Dagu, the default shell is `sh` with errexit (`-e`), so a
multi-line command stops at its first failing line instead of carrying on; a
POSIX shell named without arguments (`shell: bash`) gets `-e` too.  A shell
given with arguments is used exactly as written.
"""

from __future__ import annotations

import os
import shlex

from dagu.executors.base import Launch, StepRequest, StepResult

POSIX_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash", "mksh", "busybox"})
DEFAULT_SHELL = ("sh",)


def shell_argv(shell: tuple[str, ...]) -> list[str]:
    """The shell's argv before the script: errexit for a bare POSIX shell."""
    words = list(shell or DEFAULT_SHELL)
    if len(words) == 1 and os.path.basename(words[0]) in POSIX_SHELLS:
        words.append("-e")
    return words


class CommandJob:
    def __init__(self, request: StepRequest) -> None:
        self._launch = self._build(request)
        self._started = False
        self._code: int | None = None

    @staticmethod
    def _build(request: StepRequest) -> Launch:
        shell = shell_argv(request.shell)
        commands = request.command
        if request.script is not None:
            path = os.path.join(request.scratch, f"{request.step_id}.{request.attempt}.script")
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(request.script)
            if commands:  # `command` names the interpreter for the script
                argv = shlex.split(commands[0]) + [path]
            else:
                argv = [*shell, path]
        else:
            argv = [*shell, "-c", "\n".join(commands)]
        return Launch(argv=argv, env=request.env, cwd=request.cwd, stdout=request.stdout, stderr=request.stderr)

    def launches(self) -> list[Launch]:
        if self._started:
            return []
        self._started = True
        return [self._launch]

    def exited(self, launch: Launch, returncode: int) -> None:
        self._code = returncode

    def done(self) -> bool:
        return self._code is not None

    def result(self) -> StepResult:
        return StepResult(exit_code=self._code if self._code is not None else -1)


def make_job(request: StepRequest) -> CommandJob:
    return CommandJob(request)
