"""Turn the command line's parameters into a run's params, checked before anything runs.

Dagu's rules: `-p "A=1 B=2"` and the words after `--` are the same thing; a
`NAME=value` word sets a named param, any other word the next positional one;
given positional values replace the defaults from the first position on.
Params with a type, an enum or `required` are checked here, so a bad value is
refused with a message instead of failing some step an hour later.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from dagu.engine.evaluate import EvalError, Scope, render
from dagu.spec.plan import Param

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ParamError(Exception):
    """Parameters that cannot start the run; the message says which and why."""


def split_words(flag: str | None, rest: Sequence[str]) -> list[str]:
    if not flag:
        return list(rest)
    import shlex  # a `-p` string only

    try:
        words = shlex.split(flag)
    except ValueError as exc:
        raise ParamError(f"-p {flag!r}: {exc}") from None
    return words + list(rest)


def resolve(declared: Sequence[Param], words: Sequence[str], scope: Scope,
            run: Callable[[str, Scope], str] | None = None) -> list[tuple[str, str]]:
    """(name, value) pairs in declaration order; positional params are named "1", "2", ...

    `scope` evaluates defaults (they may use backticks and earlier params); it
    is updated as params are resolved.  `run` evaluates backticks (default: run
    them; `dagu dry` runs nothing).
    """
    named_decl = {p.name: p for p in declared if not p.positional}
    positional_decl = [p for p in declared if p.positional]
    given_named: dict[str, str] = {}
    given_positional: list[str] = []
    for word in words:
        name, sep, value = word.partition("=")
        if sep and _NAME.match(name):
            if name not in named_decl:  # a typo must not run the DAG with its default instead
                known = ", ".join(named_decl) or ("none (only positional params)" if positional_decl
                                                  else "none: the DAG declares no params")
                raise ParamError(f"unknown param {name!r} (declared named params: {known}); "
                                 "declare it under params: or pass it positionally")
            given_named[name] = value
        else:
            given_positional.append(word)
    out: list[tuple[str, str]] = []
    positional_values: list[str | None] = [None] * max(len(positional_decl), len(given_positional))
    for i, value in enumerate(given_positional):
        positional_values[i] = value
    missing: list[str] = []

    def default_of(p: Param) -> str | None:
        if p.default is None:
            return None
        try:
            return render(p.default, scope, False, run)
        except EvalError as exc:
            raise ParamError(f"default of param {p.name!r}: {exc}") from None

    position = 0
    for p in declared:
        if p.positional:
            value = positional_values[position]
            position += 1
            if value is None:
                value = default_of(p)
        else:
            value = given_named[p.name] if p.name in given_named else default_of(p)
        if value is None:
            if p.required:
                missing.append(p.name)
                continue
            value = ""
        _check(p, value)
        out.append((p.name, value))
        scope.vars[p.name] = value
    if missing:
        raise ParamError("missing required param" + ("s " if len(missing) > 1 else " ")
                         + ", ".join(repr(m) for m in missing) + "; pass NAME=value after -- or with -p")
    for i in range(position, len(positional_values)):  # more words than declared positions
        value = positional_values[i]
        if value is not None:
            out.append((str(i + 1), value))
            scope.vars[str(i + 1)] = value
    return out


def _check(p: Param, value: str) -> None:
    if p.type in ("integer", "int"):
        try:
            int(value)
        except ValueError:
            raise ParamError(f"param {p.name!r} must be an integer, got {value!r}") from None
    elif p.type == "number":
        try:
            float(value)
        except ValueError:
            raise ParamError(f"param {p.name!r} must be a number, got {value!r}") from None
    elif p.type in ("boolean", "bool") and value.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise ParamError(f"param {p.name!r} must be true or false, got {value!r}")
    if p.enum and value not in [str(e) if not isinstance(e, bool) else str(e).lower() for e in p.enum]:
        allowed = ", ".join(repr(str(e)) for e in p.enum)
        raise ParamError(f"param {p.name!r} must be one of {allowed}, got {value!r}")
