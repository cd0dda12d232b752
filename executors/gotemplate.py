"""A renderer for the subset of Go's text/template that upstream Dagu's template step documents.

Why our own small renderer and not Jinja2 underneath: the two languages differ in
exactly the places users notice (what prints for a list or a missing key,
which values are false, pipes passing the value as the LAST argument), so a
translation would render some documented templates differently.  Rendering the
Go syntax directly keeps upstream's output, and it is sandboxed by construction:
a template reads only the data it is given (map keys and list items), and calls
only the functions in `functions.FUNCS`.

The subset: text with `{{ }}` actions and `{{-`/`-}}` trimming, `{{/* comments */}}`,
`.`, `.a.b`, `$`, `$x`, `$x.a`, literals, pipelines `x | f a`, parenthesised
pipelines, `$x := ...` / `$x = ...`, `if`/`else if`/`else`, `range` (with `$i, $v :=`,
`else`, `break`, `continue`), `with` (with `else`), `end`.  `define`, `template`,
`block` and any function outside FUNCS are refused by `parse` with the construct
named, so `dagu compile` reports them.  As upstream runs with missingkey=error, a
missing map key is an error at run time.
"""

from __future__ import annotations

import re
from dataclasses import field
from typing import Any

from dagu.spec.records import dataclass
from dagu.executors.gotemplate_funcs import FUNCS, TemplateError


@dataclass
class Node:
    kind: str  # text, action, if, range, with, break, continue
    offset: int
    text: str = ""
    pipe: Any = None
    body: list["Node"] = field(default_factory=list)
    other: list["Node"] = field(default_factory=list)  # the else branch


@dataclass
class Pipe:
    decl: list[str]
    assign: bool  # `=` (assign to existing variables) rather than `:=`
    cmds: list[list[tuple]]  # each command: operands as tuples (kind, ...)
    offset: int


_UNSUPPORTED = {"define": "{{ define }} (named templates)", "template": "{{ template }} (named templates)",
                "block": "{{ block }} (named templates)"}
_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<char>'(?:[^'\\]|\\.)+')
  | (?P<decl>:=)
  | (?P<num>[-+]?(?:0[xX][0-9a-fA-F_]+|(?:\d[\d_]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?))
  | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+)
  | (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<dot>\.)
  | (?P<punct>[()|=,])
""", re.VERBOSE)


def _tokens(src: str, base: int) -> list[tuple[str, str, int]]:
    out, pos = [], 0
    while pos < len(src):
        match = _TOKEN.match(src, pos)
        if match is None:
            raise TemplateError(f"unexpected {src[pos]!r} in an action", base + pos)
        kind = match.lastgroup or ""
        if kind != "ws":
            text = match.group()
            if kind in ("field",) and out and out[-1][0] == "rparen" and base + pos == out[-1][2] + 1:
                kind = "chain"  # (pipeline).field
            out.append(("rparen" if text == ")" else kind, text, base + pos))
        pos = match.end()
    return out


def _split(template: str) -> list[tuple[str, str, int]]:
    """('text', text, offset) and ('action', inner source, offset of the inner source)."""
    items: list[tuple[str, str, int]] = []
    pos, trim_next = 0, False
    while True:
        start = template.find("{{", pos)
        text = template[pos:] if start < 0 else template[pos:start]
        if trim_next:
            text = text.lstrip(" \t\r\n")
        inner_start = start + 2
        if start >= 0 and template[inner_start:inner_start + 1] == "-" and \
                template[inner_start + 1:inner_start + 2] in (" ", "\t", "\r", "\n"):
            text = text.rstrip(" \t\r\n")
            inner_start += 2
        if text:
            items.append(("text", text, pos))
        if start < 0:
            return items
        if template.startswith("/*", inner_start):
            close = template.find("*/", inner_start)
            end = template.find("}}", close + 2) if close >= 0 else -1
            if close < 0 or end < 0 or template[close + 2:end].strip(" -") != "":
                raise TemplateError("unclosed comment", start)
            trim_next = template[close + 2:end].strip() == "-"
            pos = end + 2
            continue
        end = _action_end(template, inner_start)
        if end < 0:
            raise TemplateError("unclosed action: '{{' without its '}}'", start)
        inner = template[inner_start:end]
        trim_next = len(inner) >= 2 and inner.endswith("-") and inner[-2] in " \t\r\n"
        if trim_next:
            inner = inner[:-1]
        items.append(("action", inner, inner_start))
        pos = end + 2


def _action_end(template: str, pos: int) -> int:
    """Where the action's `}}` is, skipping quoted strings."""
    quote = None
    while pos < len(template) - 1:
        ch = template[pos]
        if quote:
            if ch == "\\" and quote != "`":
                pos += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "\"`":
            quote = ch
        elif template.startswith("}}", pos):
            return pos
        pos += 1
    return -1


class _Parser:
    def __init__(self, template: str) -> None:
        self.items = _split(template)
        self.i = 0
        self.loops = 0

    def parse(self) -> list[Node]:
        body, stop = self.list()
        if stop is not None:
            raise TemplateError(f"unexpected {{{{ {stop[0]} }}}}", stop[1])
        return body

    def list(self) -> tuple[list[Node], tuple[str, int, list] | None]:
        """Nodes up to an `end` or `else` (returned as the stop), or the end of the template."""
        nodes: list[Node] = []
        while self.i < len(self.items):
            kind, text, offset = self.items[self.i]
            self.i += 1
            if kind == "text":
                nodes.append(Node("text", offset, text=text))
                continue
            toks = _tokens(text, offset)
            if not toks:
                raise TemplateError("missing value for command", offset)
            word = toks[0][1] if toks[0][0] == "ident" else ""
            if word in ("end", "else"):
                return nodes, (word, toks[0][2], toks[1:])
            if word in _UNSUPPORTED:
                raise TemplateError(f"{_UNSUPPORTED[word]} is not supported by this dagu's template step", offset)
            if word in ("if", "with", "range"):
                nodes.append(self.block(word, toks[1:], toks[0][2]))
            elif word in ("break", "continue"):
                if not self.loops:
                    raise TemplateError(f"{{{{ {word} }}}} outside {{{{ range }}}}", toks[0][2])
                nodes.append(Node(word, toks[0][2]))
            else:
                nodes.append(Node("action", offset, pipe=self.pipe(toks, offset)))
        return nodes, None

    def block(self, word: str, toks: list, offset: int) -> Node:
        if not toks:
            raise TemplateError(f"missing value for {word}", offset)
        node = Node(word, offset, pipe=self.pipe(toks, offset, allow_two=word == "range"))
        self.loops += word == "range"
        node.body, stop = self.list()
        self.loops -= word == "range"
        if stop is None:
            raise TemplateError(f"{{{{ {word} }}}} has no {{{{ end }}}}", offset)
        if stop[0] == "else":
            rest = stop[2]
            if rest and rest[0][0] == "ident" and rest[0][1] in ("if", "with") and word != "range":
                node.other = [self.block(rest[0][1], rest[1:], rest[0][2])]  # else if / else with: one end
                return node
            if rest:
                raise TemplateError(f"unexpected {rest[0][1]!r} after else", rest[0][2])
            node.other, stop = self.list()
            if stop is None or stop[0] != "end":
                raise TemplateError(f"{{{{ {word} }}}} has no {{{{ end }}}}", offset)
        if stop[2]:
            raise TemplateError(f"unexpected {stop[2][0][1]!r} in end", stop[2][0][2])
        return node

    def pipe(self, toks: list, offset: int, allow_two: bool = False) -> Pipe:
        decl, assign, j = [], False, 0

        def plain_var(k: int) -> bool:
            return k < len(toks) and toks[k][0] == "var" and "." not in toks[k][1]

        if plain_var(0) and len(toks) > 3 and toks[1][1] == "," and plain_var(2) and toks[3][0] == "decl":
            if not allow_two:
                raise TemplateError("too many declarations", toks[0][2])
            decl, j = [toks[0][1], toks[2][1]], 4
        elif plain_var(0) and len(toks) > 1 and (toks[1][0] == "decl" or toks[1][1] == "="):
            decl, assign, j = [toks[0][1]], toks[1][1] == "=", 2
        cmds, pos = self.commands(toks, j)
        if pos != len(toks):
            raise TemplateError(f"unexpected {toks[pos][1]!r}", toks[pos][2])
        return Pipe(decl, assign, cmds, offset)

    def commands(self, toks: list, j: int) -> tuple[list[list[tuple]], int]:
        cmds: list[list[tuple]] = [[]]
        while j < len(toks):
            kind, text, off = toks[j]
            if text == "|":
                if not cmds[-1]:
                    raise TemplateError("missing command before '|'", off)
                cmds.append([])
                j += 1
                continue
            if kind == "rparen":
                break
            operand, j = self.operand(toks, j)
            cmds[-1].append(operand)
        if not cmds[-1]:
            raise TemplateError("missing value for command", toks[j - 1][2] if j else 0)
        for cmd in cmds[1:]:
            if cmd[0][0] not in ("func",):
                raise TemplateError("non-function in a pipeline stage (after '|' must come a function)", cmd[0][-1])
        return cmds, j

    def operand(self, toks: list, j: int) -> tuple[tuple, int]:
        kind, text, off = toks[j]
        if kind == "punct" and text == "(":
            cmds, k = self.commands(toks, j + 1)
            if k >= len(toks) or toks[k][0] != "rparen":
                raise TemplateError("unclosed '('", off)
            fields: list[str] = []
            if k + 1 < len(toks) and toks[k + 1][0] == "chain":
                fields = toks[k + 1][1].split(".")[1:]
                k += 1
            return ("paren", Pipe([], False, cmds, off), fields, off), k + 1
        if kind == "str":
            return ("lit", _go_string(text, off), off), j + 1
        if kind == "raw":
            return ("lit", text[1:-1], off), j + 1
        if kind == "num":
            return ("lit", _go_number(text, off), off), j + 1
        if kind == "field":
            return ("field", text.split(".")[1:], off), j + 1
        if kind == "dot":
            return ("field", [], off), j + 1
        if kind == "var":
            name, *fields = text.split(".")
            return ("var", name, fields, off), j + 1
        if kind == "ident":
            if text in ("true", "false"):
                return ("lit", text == "true", off), j + 1
            if text == "nil":
                return ("lit", None, off), j + 1
            if text in _UNSUPPORTED or text in ("if", "else", "end", "range", "with", "break", "continue"):
                raise TemplateError(f"unexpected keyword {text!r} inside an action", off)
            if text not in FUNCS:
                raise TemplateError(f'function "{text}" is not supported by this dagu\'s template step '
                                    f"(supported: {', '.join(sorted(FUNCS))})", off)
            return ("func", text, off), j + 1
        if kind == "char":
            raise TemplateError("character constants ('x') are not supported: use a string", off)
        raise TemplateError(f"unexpected {text!r}", off)


def _go_string(text: str, off: int) -> str:
    import json

    try:
        return json.loads(re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: "\\u00" + m.group(1), text))
    except ValueError:
        raise TemplateError(f"bad string literal {text}", off) from None


def _go_number(text: str, off: int) -> int | float:
    try:
        clean = text.replace("_", "")
        return int(clean, 0) if re.fullmatch(r"[-+]?(0[xX][0-9a-fA-F]+|\d+)", clean) else float(clean)
    except ValueError:
        raise TemplateError(f"bad number {text}", off) from None


def parse(template: str) -> list[Node]:
    """The template's nodes, or TemplateError naming the first construct outside the subset."""
    return _Parser(template).parse()
