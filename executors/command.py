"""Command steps: a command line, a list of commands, or a script, run by a shell.

As upstream Dagu does (spec 014), a Unix-like shell gets errexit (`-e`) unless
the step names its shell itself: the default `sh`, or the DAG's shell, stops a
multi-line command at its first failing line, while a step that says
`shell: bash` gets exactly the shell it asked for.  `-e` goes after the
configured arguments and before a configured `-c`.
"""

from __future__ import annotations

import os
import shlex

from dagu.executors.base import Launch, StepRequest, StepResult

POSIX_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash", "mksh", "busybox"})
DEFAULT_SHELL = ("sh",)


def shell_argv(shell: tuple[str, ...], errexit: bool = True) -> list[str]:
    """The shell's argv before the script: errexit for a Unix-like shell unless it is off or given."""
    words = list(shell or DEFAULT_SHELL)
    name = os.path.basename(words[0]).lower().removesuffix(".exe")
    if errexit and name in POSIX_SHELLS and "-e" not in words[1:]:
        words.insert(words.index("-c") if "-c" in words[1:] else len(words), "-e")
    return words


class CommandJob:
    def __init__(self, request: StepRequest) -> None:
        self._launch = self._build(request)
        self._started = False
        self._code: int | None = None

    @staticmethod
    def _build(request: StepRequest) -> Launch:
        shell = shell_argv(request.shell, errexit=not request.shell_named_by_step)
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
            argv = [*shell, *(() if "-c" in shell[1:] else ("-c",)), "\n".join(commands)]
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
