"""The functions a template step may call, with Go's printing and truth rules.

The set is Go text/template's built-ins (and, or, not, len, index, slice, print,
printf, println, eq, ne, lt, le, gt, ge, html, js, urlquery) plus the functions
upstream Dagu documents for its templates (split, join, count, add, empty, upper,
lower, trim, default: the pipe-friendly forms, the piped value LAST) and a few
hermetic slim-sprig helpers (toJson, quote, replace, contains, hasPrefix,
hasSuffix, trimPrefix, trimSuffix, title, sub, mul).  Nothing here reads the
environment, the clock, the network or files.
"""

from __future__ import annotations

import html as _html
import json
import re
import urllib.parse
from typing import Any, Callable


class TemplateError(Exception):
    """A template that cannot be parsed or rendered; `offset` is where in the template text."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


def truth(value: Any) -> bool:
    """Go's notion of true: not the zero value of its type, not empty."""
    if value is None:
        return False
    if isinstance(value, (bool, int, float, str, list, tuple, dict)):
        return bool(value)
    return True


def _number(value: float) -> str:
    if value != value or value in (float("inf"), float("-inf")):
        return {True: "NaN"}.get(value != value, "+Inf" if value > 0 else "-Inf")
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    if "e" in text:
        mantissa, exp = text.split("e")
        sign = "-" if exp.startswith("-") else "+"
        text = f"{mantissa}e{sign}{exp.lstrip('+-').zfill(2)}"
    return text


def go_text(value: Any) -> str:
    """How Go's fmt prints a value with %v (what an action outputs)."""
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(_inner(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{_inner(k)}:{_inner(value[k])}" for k in sorted(value, key=str)) + "]"
    return str(value)


def _inner(value: Any) -> str:
    return "<nil>" if value is None else go_text(value)


def _len(value: Any) -> int:
    if isinstance(value, (str, list, tuple, dict)):
        return len(value.encode("utf-8")) if isinstance(value, str) else len(value)
    raise ValueError(f"len of {go_text(value)}")


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, (list, tuple, str)):
            if not isinstance(key, int) or not 0 <= key < len(value):
                raise IndexError(f"index out of range: {key}")
            value = value[key]
        else:
            raise ValueError(f"can't index item of type {type(value).__name__}")
    return value


def _sprint(*args: Any) -> str:
    out = []
    for i, arg in enumerate(args):  # Go adds a space between operands when neither is a string
        if i and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(_inner(arg))
    return "".join(out)


_GO_TYPES = {str: "string", int: "int", float: "float64", bool: "bool", list: "[]interface {}",
             dict: "map[string]interface {}"}
_VERB = re.compile(r"%([-+# 0]*)(\d+)?(?:\.(\d+))?([vsdqftxXeEgGb%])")


def _printf(fmt: str, *args: Any) -> str:
    queue = list(args)

    def one(match: re.Match) -> str:
        flags, width, prec, verb = match.groups()
        if verb == "%":
            return "%"
        if not queue:
            return f"%!{verb}(MISSING)"
        arg = queue.pop(0)
        if verb in "vs":
            text = _inner(arg)
        elif verb == "q":
            text = json.dumps(arg if isinstance(arg, str) else go_text(arg), ensure_ascii=False)
        elif verb == "t":
            text = go_text(arg)
        elif verb in "dxXb":
            if not isinstance(arg, int) or isinstance(arg, bool):
                return f"%!{verb}({_GO_TYPES.get(type(arg), type(arg).__name__)}={go_text(arg)})"
            text = format(arg, {"d": "d", "x": "x", "X": "X", "b": "b"}[verb])
        else:
            if not isinstance(arg, (int, float)) or isinstance(arg, bool):
                return f"%!{verb}({_GO_TYPES.get(type(arg), type(arg).__name__)}={go_text(arg)})"
            text = format(float(arg), f".{prec if prec is not None else 6}{verb}") if verb != "g" or prec \
                else _number(float(arg))
        if width:
            text = text.ljust(int(width)) if "-" in flags else text.rjust(int(width), "0" if "0" in flags else " ")
        return text

    return _VERB.sub(one, fmt)


def _cmp(name: str) -> Callable[[Any, Any], bool]:
    ops = {"lt": lambda a, b: a < b, "le": lambda a, b: a <= b, "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b}

    def compare(a: Any, b: Any) -> bool:
        if isinstance(a, (int, float)) != isinstance(b, (int, float)) or isinstance(a, bool) or isinstance(b, bool):
            raise ValueError(f"incompatible types for comparison: {go_text(a)} and {go_text(b)}")
        return ops[name](a, b)
    return compare


def _join(sep: str, value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"join: unsupported type {type(value).__name__}")
    return sep.join(_inner(v) if not isinstance(v, str) else v for v in value)


def _count(value: Any) -> int:
    if value is None:
        return 0
    return _len(value)


def _default(default: Any, value: Any = None) -> Any:
    return value if truth(value) else default


def _and(thunks: list) -> Any:
    value: Any = None
    for thunk in thunks:
        value = thunk()
        if not truth(value):
            return value
    return value


def _or(thunks: list) -> Any:
    value: Any = None
    for thunk in thunks:
        value = thunk()
        if truth(value):
            return value
    return value


def _js(value: Any) -> str:
    return json.dumps(go_text(value))[1:-1].replace("<", "\\u003C").replace(">", "\\u003E").replace("'", "\\'")


FUNCS: dict[str, Callable[..., Any]] = {
    # Go text/template built-ins
    "not": lambda v: not truth(v),
    "len": _len,
    "index": _index,
    "slice": lambda v, *ij: v[ij[0]:] if len(ij) == 1 else v[ij[0]:ij[1]] if ij else v,
    "print": _sprint,
    "println": lambda *a: " ".join(_inner(x) for x in a) + "\n",
    "printf": _printf,
    "eq": lambda a, *bs: any(a == b for b in bs),
    "ne": lambda a, b: a != b,
    "lt": _cmp("lt"), "le": _cmp("le"), "gt": _cmp("gt"), "ge": _cmp("ge"),
    "html": lambda *a: _html.escape(_sprint(*a), quote=True).replace("&#x27;", "&#39;"),
    "js": lambda *a: _js(_sprint(*a)),
    "urlquery": lambda *a: urllib.parse.quote_plus(_sprint(*a)),
    # upstream Dagu's documented functions (the piped value is the last argument)
    "split": lambda sep, s: str(s).split(sep) if sep else list(str(s)),
    "join": _join,
    "count": _count,
    "add": lambda b, a: a + b,
    "empty": lambda v=None: not truth(v),
    "upper": lambda s: str(s).upper(),
    "lower": lambda s: str(s).lower(),
    "trim": lambda s: str(s).strip(),
    "default": _default,
    # hermetic slim-sprig helpers
    "toJson": lambda v: json.dumps(v, ensure_ascii=False, separators=(",", ":")),
    "quote": lambda *a: " ".join(json.dumps(go_text(x), ensure_ascii=False) for x in a if x is not None),
    "replace": lambda old, new, s: str(s).replace(old, new),
    "contains": lambda sub, s: sub in str(s),
    "hasPrefix": lambda p, s: str(s).startswith(p),
    "hasSuffix": lambda p, s: str(s).endswith(p),
    "trimPrefix": lambda p, s: str(s).removeprefix(p),
    "trimSuffix": lambda p, s: str(s).removesuffix(p),
    "title": lambda s: re.sub(r"\b([a-z])", lambda m: m.group(1).upper(), str(s)),
    "sub": lambda a, b: a - b,
    "mul": lambda a, *b: __import__("math").prod([a, *b]),
}
LAZY: dict[str, Callable[[list], Any]] = {"and": _and, "or": _or}  # short-circuit: arguments as thunks
FUNCS.update({name: (lambda *a: None) for name in LAZY})  # known names for the parser; LAZY runs them
