"""Check every `${...}` reference against what can exist when it is evaluated.

Two kinds of finding: a step reading another step's result (``${build.output}``
or an `output:` variable) that does not run before it is an *error*: the value
cannot exist yet, whatever the host.  A name nobody defines is a *warning*:
it may still come from the host environment at run time.  Step references are
rewritten here into ``{"step": ID, "field": F, "path": [...]}`` nodes so the
runtime does not have to guess what a dotted name means.
"""

from __future__ import annotations

import re
from dataclasses import field
from collections.abc import Callable, Iterable

from dagu.spec.records import dataclass
from dagu.compiler.context import DocContext, TemplateRef
from dagu.compiler.graph import suggest

STEP_FIELDS = frozenset({"output", "exit_code", "stdout", "stderr"})

# Variables the runtime sets for every step (upstream's names).
SPECIAL_VARS = frozenset({
    "DAG_NAME", "DAG_RUN_ID", "DAG_RUN_LOG_FILE", "DAG_RUN_STEP_NAME", "DAG_RUN_STEP_STDOUT_FILE",
    "DAG_RUN_STEP_STDERR_FILE", "DAG_RUN_STATUS", "DAG_RUN_WORK_DIR", "DAG_PARAMS_JSON",
    "DAG_RUN_STEP_ID", "DAG_WAITING_STEPS", "DAG_PUSHBACK", "DAG_PUSHBACK_ITERATION",
    "DAG_PUSHBACK_PREVIOUS_STDOUT_FILE", "DAGU_PARAMS_JSON", "ITEM", "DAG_RUN_ATTEMPT",
})

# What the runtime passes from the invoking environment to every step (process/sandbox.py's
# ALLOWED_ENV; a test keeps the two equal) and what a shell sets by itself: reading these is fine.
# Anything else from the operator's environment reaches a step only through
# `sandbox.env_passthrough` or `sandbox.inherit_env`, so reading it is worth a warning.
SANDBOX_ENV = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_*", "TZ", "TMPDIR", "TERM")
HOST_VARS = frozenset({
    "PWD", "OLDPWD", "HOSTNAME", "UID", "EUID", "PPID", "RANDOM", "SECONDS", "LINENO", "IFS", "DAGU_HOME",
    "BASH", "BASH_VERSION", "BASHPID", "BASH_SOURCE", "BASH_REMATCH", "FUNCNAME", "PIPESTATUS", "HOSTTYPE",
    "OSTYPE", "MACHTYPE", "SHLVL", "REPLY", "OPTARG", "OPTIND", "COLUMNS", "LINES",
})


def env_pattern_match(name: str, patterns: Iterable[str]) -> bool:
    """NAME, or a PREFIX* pattern, as sandbox.env_passthrough spells them."""
    return any(name.startswith(p[:-1]) if p.endswith("*") else name == p for p in patterns)


# Names a shell command defines for itself: NAME=..., for NAME in, read NAME, local/export NAME.
_SHELL_DEFS = re.compile(
    r"(?:^|[\s;&|({])(?:export\s+|local\s+|readonly\s+|declare\s+(?:-\w+\s+)*)?([A-Za-z_]\w*)\+?="
    r"|\bfor\s+([A-Za-z_]\w*)\s+in\b"
    r"|\bread\s+(?:-\w+\s+)*((?:[A-Za-z_]\w*\s*)+)"
    r"|\bfunction\s+([A-Za-z_]\w*)"
)


def shell_defined(text: str) -> set[str]:
    """Variable names a shell snippet assigns itself, so reading them is not a typo."""
    names: set[str] = set()
    for m in _SHELL_DEFS.finditer(text):
        for group in m.groups():
            if group:
                names.update(group.split())
    return names


@dataclass
class Scope:
    """What a DAG defines: env, params, dotenv keys, outputs by variable, step ids."""

    names: set[str] = field(default_factory=set)
    step_ids: set[str] = field(default_factory=set)
    outputs: dict[str, list[str]] = field(default_factory=dict)  # var -> steps that set it
    step_env: dict[str, set[str]] = field(default_factory=dict)  # step -> its own env names
    unknown_dotenv: bool = False  # a dotenv file we could not read: skip undefined warnings
    passthrough: tuple[str, ...] = ()  # sandbox.env_passthrough of the DAG
    step_passthrough: dict[str, tuple[str, ...]] = field(default_factory=dict)  # of each step
    inherit_env: bool = False  # sandbox.inherit_env: the whole host environment reaches steps


def check_references(ctx: DocContext, refs: Iterable[TemplateRef], scope: Scope,
                     ancestors: Callable[[str], set[str]], handler_owners: set[str]) -> None:
    """Rewrite step references and report the impossible and the undefined ones."""
    shell_cache: dict[str, set[str]] = {}
    for ref in refs:
        node = ref.node
        name = node.get("var")
        if name is None:
            continue
        path = node.get("path") or []
        owner = ref.owner
        in_handler = owner in handler_owners
        if name in scope.step_ids and path and path[0] in STEP_FIELDS and name not in scope.names:
            node.clear()
            node.update({"step": name, "field": path[0], "path": list(path[1:])})
            if owner is not None and not in_handler and name != owner and name not in ancestors(owner):
                _report(ctx, ref, "not-an-ancestor", step=owner, ref=_show(name, path), target=name,
                        notes=[f"add '{name}' to the depends of '{owner}'"])
            elif owner is None:
                _report(ctx, ref, "not-an-ancestor", step="(DAG level)", ref=_show(name, path), target=name,
                        notes=["DAG-level values are evaluated before any step runs"])
            continue
        if name in scope.names or name.isdigit() or name in SPECIAL_VARS or name in HOST_VARS:
            continue
        if scope.inherit_env or env_pattern_match(name, (*SANDBOX_ENV, *scope.passthrough,
                                                         *scope.step_passthrough.get(owner or "", ()))):
            continue
        if owner is not None and name in scope.step_env.get(owner, ()):
            continue
        setters = scope.outputs.get(name)
        if setters:
            if owner is None or in_handler:
                continue
            own_repeat = owner in setters and "repeat_policy" in ref.path  # checked after each run
            if not own_repeat and not any(s in ancestors(owner) for s in setters if s != owner):
                target = setters[0]
                _report(ctx, ref, "not-an-ancestor", step=owner, ref=_show(name, path), target=target,
                        notes=[f"'{name}' is the output of step '{target}'; add it to the depends of '{owner}'"])
            continue
        if path and path[0] in STEP_FIELDS and name not in scope.names:
            _report(ctx, ref, "unknown-step-ref", ref=_show(name, path), target=name,
                    notes=suggest(name, sorted(scope.step_ids)))
            continue
        if scope.unknown_dotenv:
            continue
        defined = shell_cache.get(ref.text)
        if defined is None:
            defined = shell_cache[ref.text] = shell_defined(ref.text)
        if name in defined:
            continue
        candidates = sorted(scope.names | set(scope.outputs) | SPECIAL_VARS)
        notes = suggest(name, candidates) or [
            "define it under env: or params:, or escape the dollar (\\$) to pass it to the shell as is",
            "variables of the environment dagu runs in reach steps only when listed under "
            "sandbox: env_passthrough: (or with sandbox: inherit_env: true)"]
        _report(ctx, ref, "undefined-variable", name=name, notes=notes)


def _show(name: str, path: list) -> str:
    tail = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
    return "${" + name + tail + "}"


def _report(ctx: DocContext, where: TemplateRef, code: str, notes: list[str], **fields: str) -> None:
    source, line, col = ctx.position_of_ref(where)
    ctx.reporter.at(source, line, col, code, notes=notes, width=where.length, **fields)
