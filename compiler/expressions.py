"""Parse template strings (``echo "${A.b} `date` \\$HOME"``) into the plan's JSON AST.

Every user string that may hold references goes through ``parse_template``.  The
result is plain lists, strings and dicts because it is stored in the plan file
and evaluated by the runtime, which must not import lark.  A part is

- ``str``: literal text (adjacent pieces merged, quotes included),
- ``{"var": NAME, "path": [str | int, ...]}``: a variable or positional parameter
  (``${step.output}`` is also this form; telling steps from variables is a later
  pass, which needs the whole DAG),
- ``{"cmd": [parts]}``: a backtick substitution, itself a template,
- ``{"esc": "$"}``: ``\\$``, a dollar that must never be expanded (the runtime
  writes it back as ``\\$`` for a shell and as ``$`` elsewhere).

The grammar (``spec/expr.lark``) never fails: anything that is not one of our
constructs is literal text, so shell syntax passes through untouched.  The only
problem reported is a ``${`` left open at the end of the string.

Cost matters (a big DAG has thousands of strings): strings without any special
character skip parsing, and strings without backticks, backslashes and single
quotes are searched with the grammar's own reference regexes instead of the
LALR parser, which the tests check gives identical results.
"""

from __future__ import annotations

import functools
import re


from dagu.spec.records import dataclass

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any
else:
    Any = object  # the aliases below are built at run time; for type checkers this is typing.Any

if TYPE_CHECKING:
    from lark import Lark

__all__ = ["ExprProblem", "Template", "is_plain", "parse_template"]

# Characters without which a string cannot hold any construct of the grammar.
_SPECIAL = ("$", "`", "\\", "'")
_REFERENCES = frozenset({"DOLLAR_NAME", "DOLLAR_DIGIT", "BRACED_REF"})
# The terminals that the fast lane searches for, in the grammar's priority order.
_SCANNED = ("BRACED_REF", "UNTERMINATED", "DOLLAR_NAME", "DOLLAR_DIGIT")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SEGMENT = re.compile(r"\.([A-Za-z0-9_-]+)|\[([0-9]+)\]")


@dataclass(frozen=True)
class ExprProblem:
    """Something in a template that is almost surely a mistake, with its exact span."""

    offset: int  # 0-based character offset in the parsed string
    length: int  # characters spanned, >= 1
    code: str  # a code of compiler/codes.py, e.g. "unterminated-reference"
    message: str
    hint: str | None


@dataclass(frozen=True)
class Template:
    """A parsed template: the AST, its problems, and where every reference sits."""

    parts: list
    problems: tuple[ExprProblem, ...]
    # (offset, length, var node) per reference, nested ones included, in source
    # order; the node is the very dict inside ``parts``, so later passes can
    # annotate a reference and map it back to a line and column.
    refs: tuple[tuple[int, int, dict], ...]


@dataclass(frozen=True)
class _Cmd:
    """The tokens between a pair of backticks."""

    items: list


@dataclass(frozen=True)
class _Quoted:
    """A double-quoted run: it only steers lexing, so it is flattened away."""

    items: list


_Item = Any  # a lark Token, a _Cmd or a _Quoted


@functools.lru_cache(maxsize=1)
def _parser() -> "Lark":
    """Build the parser once; the grammar is package data so it ships with the wheel.

    lark is imported here, not at module level: most workflow strings take the
    regex path below, and importing lark (~70 ms) would double the time of
    `dagu compile` on a small file.
    """
    from lark import Lark, Transformer

    class _Group(Transformer):
        """Group tokens by construct and leave them as tokens, which carry offsets.

        It runs inside the LALR parser, so no parse tree is built; it must hold
        no per-parse state, which is why ``_flatten`` builds parts, refs and problems.
        """

        def start(self, children: list[_Item]) -> list[_Item]:
            return children

        def dquoted(self, children: list[_Item]) -> _Quoted:
            return _Quoted(children)

        def cmd_body(self, children: list[_Item]) -> _Cmd:
            return _Cmd(children)

    from importlib.resources import files  # with lark: 5 ms of imports that regex-only files skip

    grammar = (files("dagu.spec") / "expr.lark").read_text(encoding="utf-8")
    return Lark(grammar, parser="lalr", lexer="contextual", transformer=_Group())


# The grammar's reference terminals as one regex, so the common case needs no
# lark at all.  tests/compiler/test_expressions.py checks that this is exactly
# what `grammar_reference_scanner()` derives from spec/expr.lark.
_REFERENCE_SCANNER = re.compile('(?P<BRACED_REF>\\$\\{(?:[A-Za-z_][A-Za-z0-9_]*(?:(?:\\[[0-9]+\\]|\\.[A-Za-z0-9_-]+))*|[1-9][0-9]*)\\})|(?P<UNTERMINATED>\\$\\{(?:(?:[A-Za-z_][A-Za-z0-9_]*(?:(?:\\[[0-9]+\\]|\\.[A-Za-z0-9_-]+))*(?:(?:\\[[0-9]*|\\.))?|[1-9][0-9]*))?(?=\\s*\\Z))|(?P<DOLLAR_NAME>\\$[A-Za-z_][A-Za-z0-9_]*)|(?P<DOLLAR_DIGIT>\\$[1-9])')


def _reference_scanner() -> re.Pattern[str]:
    return _REFERENCE_SCANNER


@functools.lru_cache(maxsize=1)
def grammar_reference_scanner() -> re.Pattern[str]:
    """One regex for the references, made from the grammar's own terminals.

    In a string without backticks, backslashes and single quotes the grammar
    only ever finds references in literal text, so a regex search gives the
    same result as the parser at a fraction of the cost (a full LALR parse
    costs about 60 microseconds for a typical command).  Taking the patterns
    from the grammar keeps one definition of what a reference is.
    """
    patterns = {t.name: t.pattern.to_regexp() for t in _parser().terminals}
    return re.compile("|".join(f"(?P<{name}>{patterns[name]})" for name in _SCANNED))


def is_plain(text: str) -> bool:
    """True when ``text`` cannot hold a reference, so callers may skip parsing."""
    return "$" not in text and "`" not in text and "\\" not in text and "'" not in text  # = _SPECIAL


def parse_template(text: str) -> Template:
    """Parse ``text`` into a ``Template``; never raises for any input string."""
    if is_plain(text):
        return Template([text] if text else [], (), ())
    if "$" not in text and "`" not in text:
        # Only quotes and backslashes: they change how $ and ` are read, but
        # there is neither, so it is all literal.
        return Template([text], (), ())
    if "`" in text or "\\" in text or "'" in text:
        return _parse_full(text)
    return _parse_fast(text)


def _parse_full(text: str) -> Template:
    """Parse with lark: needed as soon as quoting or backticks may matter."""
    parts: list = []
    refs: list[tuple[int, int, dict]] = []
    problems: list[ExprProblem] = []
    _flatten(_parser().parse(text), parts, refs, problems)
    return Template(parts, tuple(problems), tuple(refs))


def _parse_fast(text: str) -> Template:
    """The same result as ``_parse_full`` for text without ` \\ and ': refs in literal text."""
    parts: list = []
    refs: list[tuple[int, int, dict]] = []
    problems: list[ExprProblem] = []
    end = 0
    for match in _reference_scanner().finditer(text):
        start, kind, value = match.start(), match.lastgroup, match.group()
        if start > end:
            _append_text(parts, text[end:start])
        end = match.end()
        if kind == "UNTERMINATED":
            problems.append(_unterminated(start, value))
            _append_text(parts, value)
        else:
            node = _var_node(kind, value)
            parts.append(node)
            refs.append((start, len(value), node))
    if end < len(text):
        _append_text(parts, text[end:])
    return Template(parts, tuple(problems), tuple(refs))


def _flatten(items: list[_Item], parts: list, refs: list, problems: list) -> None:
    """Append the parser's ``items`` to ``parts`` as AST parts, merging literal text."""
    for item in items:
        if isinstance(item, _Quoted):
            _flatten(item.items, parts, refs, problems)
        elif isinstance(item, _Cmd):
            inner: list = []
            _flatten(item.items, inner, refs, problems)
            parts.append({"cmd": inner})
        elif item.type in _REFERENCES:
            node = _var_node(item.type, item.value)
            parts.append(node)
            refs.append((item.start_pos, len(item.value), node))
        elif item.type == "ESCAPED_DOLLAR":
            parts.append({"esc": "$"})
        elif item.type in ("BT_OPEN", "BT_CLOSE"):
            continue  # the cmd node stands for the backticks
        else:
            if item.type == "UNTERMINATED":
                problems.append(_unterminated(item.start_pos, item.value))
            _append_text(parts, item.value)


def _var_node(kind: str, value: str) -> dict:
    """``$NAME``, ``$1``, ``${NAME.a[0]}`` or ``${12}`` as a var node.

    The grammar has already checked the shape, so the path regex only splits it.
    """
    if kind != "BRACED_REF":
        return {"var": value[1:], "path": []}
    inner = value[2:-1]
    name = _NAME.match(inner)
    if name is None:  # positional: ${12}
        return {"var": inner, "path": []}
    path: list[str | int] = [
        field if field else int(index) for field, index in _SEGMENT.findall(inner, name.end())
    ]
    return {"var": name.group(), "path": path}


def _append_text(parts: list, text: str) -> None:
    if parts and isinstance(parts[-1], str):
        parts[-1] += text
    else:
        parts.append(text)


def _unterminated(offset: int, text: str) -> ExprProblem:
    """Report a ``${`` that runs to the end of the string; the span covers ``${NAME``."""
    return ExprProblem(
        offset=offset,
        length=len(text),
        code="unterminated-reference",
        message="'${' opened here is never closed",
        hint="close it with '}' or write '\\$' for a literal dollar",
    )
