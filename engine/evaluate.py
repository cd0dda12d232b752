"""Evaluate the plan's templates at run time: variables, JSON paths, step fields, backticks.

The compiler already parsed every string (spec/plan.py describes the parts), so
this is a walk over lists, not parsing.  Two contexts differ:

- text given to a shell: an unknown variable is written back as `${NAME...}`
  so the shell (or bash arrays such as `${arr[1]}`) still sees it, and an
  escaped dollar stays `\\$`;
- any other value (env values, conditions, params): an unknown variable is
  empty, as a shell would make it, and an escaped dollar is a plain `$`.
"""

from __future__ import annotations

import json
import os
from dataclasses import field
from collections.abc import Callable, Mapping

from dagu.spec.records import dataclass

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any


class EvalError(Exception):
    """A template that could not be evaluated (a failing backtick command, ...)."""


@dataclass
class StepFacts:
    """What later steps may read of a finished step: `${id.output}`, `${id.exit_code}`, ..."""

    output: str | None = None
    stdout: str | None = None  # path of the stdout log
    stderr: str | None = None
    exit_code: int | None = None
    outputs: dict[str, Any] | None = None


@dataclass
class Scope:
    """The variables one evaluation sees, and where backtick commands run."""

    vars: dict[str, str]
    env: Mapping[str, str]  # the process environment for backtick commands
    cwd: str
    steps: Mapping[str, StepFacts] = field(default_factory=dict)
    shell: tuple[str, ...] = ("sh", "-c")


def _source(name: str, path: list) -> str:
    return "${" + name + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path) + "}"


def _follow(value: Any, path: list) -> Any:
    """Navigate parsed JSON; a missing key or index raises LookupError."""
    for key in path:
        if isinstance(value, list) and isinstance(key, int):
            value = value[key]
        elif isinstance(value, list) and isinstance(key, str) and key.isdigit():
            value = value[int(key)]
        elif isinstance(value, dict):
            value = value[str(key)]
        else:
            raise LookupError(key)
    return value


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")) if isinstance(value, (dict, list)) \
        else ("true" if value is True else "false" if value is False else str(value))


def _json_path(text: str, path: list) -> str | None:
    try:
        return _as_text(_follow(json.loads(text), path))
    except (ValueError, LookupError, TypeError, IndexError):
        return None


def _step_field(facts: StepFacts, fld: str, path: list) -> str | None:
    if fld == "output":
        if facts.output is None:
            return None
        return facts.output if not path else _json_path(facts.output, path)
    if fld == "outputs":
        if facts.outputs is None:
            return None
        try:
            return _as_text(_follow(facts.outputs, path))
        except (LookupError, TypeError, IndexError):
            return None
    if fld in ("stdout", "stderr"):
        return getattr(facts, fld)
    if fld in ("exit_code", "exitCode"):
        return None if facts.exit_code is None else str(facts.exit_code)
    return None


def lookup(name: str, path: list, scope: Scope) -> str | None:
    """The value of `${name.path}`, or None when nothing defines it."""
    value = scope.vars.get(name)
    if value is not None:
        return value if not path else _json_path(value, path)
    facts = scope.steps.get(name)
    if facts is not None and path and isinstance(path[0], str):
        return _step_field(facts, path[0], path[1:])
    return None


def render(parts: list, scope: Scope, shell: bool, run: Callable[[str, Scope], str] | None = None,
           defer_env: bool = False) -> str:
    """A template's text; `run` evaluates backtick commands (default: the scope's shell).

    With `defer_env` (text a shell runs), a plain `$NAME` that the process environment holds
    with the same value is left for the shell to expand (spec 006): pasting the value in would
    make the shell evaluate a `$(...)` or backtick inside it, which upstream never does."""
    if len(parts) == 1 and isinstance(parts[0], str):
        return parts[0]
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        elif "var" in part:
            value = lookup(part["var"], part.get("path", []), scope)
            if defer_env and value is not None and not part.get("path") and scope.env.get(part["var"]) == value:
                out.append("${" + part["var"] + "}")
            elif value is None:
                path = part.get("path", [])
                # for a shell, give back what it can read itself: $NAME, or a bash array element
                keep = shell and all(isinstance(p, int) for p in path)
                out.append(_source(part["var"], path) if keep else "")
            else:
                out.append(value)
        elif "step" in part:
            facts = scope.steps.get(part["step"])
            value = _step_field(facts, part["field"], part.get("path", [])) if facts is not None else None
            out.append(value or "")  # ${step.field} is no shell syntax: unknown is empty
        elif "cmd" in part:
            command = render(part["cmd"], scope, True, run)
            out.append((run or substitute)(command, scope))
        elif "esc" in part:
            out.append("\\$" if shell else "$")
    return "".join(out)


def substitute(command: str, scope: Scope) -> str:
    """Backtick substitution: the command's stdout, trailing newlines trimmed, as a shell does."""
    import subprocess  # a backtick is rare: a run without one need not import it

    try:
        proc = subprocess.run([*scope.shell, command], cwd=scope.cwd, env=dict(scope.env), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EvalError(f"`{command}` could not run: {exc}") from None
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise EvalError(f"`{command}` exited with status {proc.returncode}" + (f": {err[-1]}" if err else ""))
    return proc.stdout.decode("utf-8", "replace").rstrip("\n")


def render_value(value: Any, scope: Scope) -> Any:
    """Executor input (`Step.config`): strings holding expressions are {"$expr": parts}."""
    if isinstance(value, dict):
        if set(value) == {"$expr"}:
            return render(value["$expr"], scope, False)
        return {k: render_value(v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, scope) for v in value]
    return value


def read_dotenv(path: str) -> dict[str, str]:
    """KEY=value lines (`export`, quotes and # comments allowed), as docker and dotenv read them."""
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for raw in fh:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("export "):
                line = line[7:].lstrip()
            name, sep, value = line.partition("=")
            name = name.strip()
            if not sep or not name:
                continue
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
                if raw.strip().split("=", 1)[1].strip().startswith('"'):
                    value = value.replace("\\n", "\n").replace('\\"', '"')
            elif " #" in value:
                value = value.split(" #", 1)[0].rstrip()
            out[name] = value
    return out


def resolve_path(base: str, path: str) -> str:
    return os.path.normpath(os.path.join(base, os.path.expanduser(path)))
