"""What a container step (docker, kubernetes) runs and with which environment, from a StepRequest.

Shared by the two types so they agree on two rules:

- **Environment.** A container gets only the environment the workflow declares (the DAG's and
  the step's `env:`, params, secrets, dagu's own DAG_* variables, and `with: env`), never the
  operator's: a variable whose value is exactly the one the supervisor inherited is left out.
  Values travel in the API request body, never on a command line, so `ps` never shows them.
- **Command.** The step's `command:` runs as an argv (split like a shell would, no shell in
  between) when it is one line; several lines, a `script:`, or a `shell:` run through a shell
  inside the container (`/bin/sh -c` unless one is named).
"""

from __future__ import annotations

import shlex
from typing import Any, Mapping

from dagu.executors.base import ExecutorError, StepRequest

# Client settings that configure how dagu reaches the daemon or cluster: never the container's.
CLIENT_VARIABLES = frozenset({"DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "KUBECONFIG"})


def env_pairs(value: Any, where: str) -> list[tuple[str, str]]:
    """`env` given as a mapping, a list of "K=V" strings, or a list of one-key mappings."""
    if value is None:
        return []
    items: list[tuple[str, str]] = []
    if isinstance(value, Mapping):
        return [(str(k), _text(v)) for k, v in value.items()]
    if not isinstance(value, list):
        raise ExecutorError(f"{where}: env must be a mapping or a list, not {type(value).__name__}")
    for entry in value:
        if isinstance(entry, str):
            name, sep, val = entry.partition("=")
            if not sep or not name:
                raise ExecutorError(f"{where}: env entry {entry.split('=')[0]!r} is not NAME=value")
            items.append((name, val))
        elif isinstance(entry, Mapping) and "name" in entry and set(entry) <= {"name", "value"}:
            items.append((str(entry["name"]), _text(entry.get("value", ""))))
        elif isinstance(entry, Mapping):
            items.extend((str(k), _text(v)) for k, v in entry.items())
        else:
            raise ExecutorError(f"{where}: env entries are NAME=value strings or mappings")
    return items


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def declared_env(request: StepRequest, extra: Any = None, where: str = "with.env") -> dict[str, str]:
    """The step's declared environment plus `extra` (with: env, which wins); no operator variable."""
    inherited = request.parent_env
    env = {name: value for name, value in request.env.items()
           if name not in CLIENT_VARIABLES and inherited.get(name) != value}
    env.update(env_pairs(extra, where))
    return env


def words(value: Any) -> list[str] | None:
    """A string split like a shell would, or a list of words as given; None when absent."""
    if value is None:
        return None
    if isinstance(value, str):
        return shlex.split(value)
    return [_text(v) for v in value]


def shell_words(request: StepRequest, configured: Any) -> list[str] | None:
    """The shell that wraps the command: `with: shell`, else a `shell:` the step names itself."""
    shell = words(configured)
    if not shell and request.shell_named_by_step and request.shell:
        shell = list(request.shell)
    if not shell:
        return None
    return shell if "-c" in shell else shell + ["-c"]


def step_argv(request: StepRequest, configured_shell: Any = None, default: Any = None) -> list[str] | None:
    """The argv to run in the container; None: the image's own command."""
    shell = shell_words(request, configured_shell)
    lines = [line for line in request.command if line.strip()]
    if request.script is not None:
        body = "\n".join(lines + [request.script]) if lines else request.script
        return (shell or ["/bin/sh", "-c"]) + [body]
    if not lines:
        return words(default)
    if shell:
        return shell + ["\n".join(lines)]
    if len(lines) == 1:
        try:
            return shlex.split(lines[0])
        except ValueError as exc:
            raise ExecutorError(f"command {lines[0][:60]!r} cannot be split into words ({exc})") from None
    return ["/bin/sh", "-c", "set -e\n" + "\n".join(lines)]
