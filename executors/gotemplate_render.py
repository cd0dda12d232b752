"""Rendering a parsed Go-style template (executors/gotemplate.py parses it).

Go's rules where users see them: dot moves into `range` and `with`, variables are scoped to
their block, a pipe passes its value as the last argument, `and`/`or` short-circuit, a map's
missing key is an error (upstream runs with missingkey=error), and values print as fmt's %v.
"""

from __future__ import annotations

from typing import Any

from dagu.executors.gotemplate import Node, Pipe, parse
from dagu.executors.gotemplate_funcs import FUNCS, LAZY, TemplateError, go_text, truth


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _Renderer:
    def __init__(self, root: Any, write: Any, line_of: Any) -> None:
        self.write = write
        self.scopes: list[dict[str, Any]] = [{"$": root}]
        self.line_of = line_of

    def nodes(self, nodes: list[Node], dot: Any) -> None:
        for node in nodes:
            kind = node.kind
            if kind == "text":
                self.write(node.text)
            elif kind == "action":
                value = self.pipe(node.pipe, dot)
                if not node.pipe.decl:
                    self.write(go_text(value))
            elif kind in ("if", "with", "range"):
                self.scopes.append({})  # a variable declared in the action lives until its end
                try:
                    self.block(node, dot)
                finally:
                    self.scopes.pop()
            elif kind == "break":
                raise _Break()
            elif kind == "continue":
                raise _Continue()

    def block(self, node: Node, dot: Any) -> None:
        if node.kind == "range":
            self.range(node, dot)
            return
        value = self.pipe(node.pipe, dot)
        if not truth(value):
            self.scoped(node.other, dot)
        else:
            self.scoped(node.body, value if node.kind == "with" else dot)

    def scoped(self, nodes: list[Node], dot: Any) -> None:
        self.scopes.append({})
        try:
            self.nodes(nodes, dot)
        finally:
            self.scopes.pop()

    def range(self, node: Node, dot: Any) -> None:
        pipe = node.pipe
        value = self.pipe(Pipe([], False, pipe.cmds, pipe.offset), dot)
        if isinstance(value, dict):
            pairs = [(k, value[k]) for k in sorted(value, key=str)]
        elif isinstance(value, (list, tuple)):
            pairs = list(enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            pairs = [(i, i) for i in range(value)]
        elif value is None:
            pairs = []
        else:
            raise TemplateError(f"range can't iterate over {go_text(value)}", pipe.offset)
        if not pairs:
            self.scoped(node.other, dot)
            return
        for key, item in pairs:
            scope: dict[str, Any] = {}
            if len(pipe.decl) == 1:
                scope[pipe.decl[0]] = item
            elif len(pipe.decl) == 2:
                scope[pipe.decl[0]], scope[pipe.decl[1]] = key, item
            self.scopes.append(scope)
            try:
                self.nodes(node.body, item)
            except _Break:
                break
            except _Continue:
                continue
            finally:
                self.scopes.pop()

    def pipe(self, pipe: Pipe, dot: Any) -> Any:
        value: Any = _NOTHING
        for cmd in pipe.cmds:
            value = self.command(cmd, dot, value)
        for name in pipe.decl:
            if pipe.assign:
                for scope in reversed(self.scopes):
                    if name in scope:
                        scope[name] = value
                        break
                else:
                    raise TemplateError(f"undefined variable: {name}", pipe.offset)
            else:
                self.scopes[-1][name] = value
        return value

    def command(self, cmd: list[tuple], dot: Any, piped: Any) -> Any:
        head = cmd[0]
        if head[0] == "func":
            name = head[1]
            if name in LAZY:
                thunks = [lambda a=a: self.operand(a, dot) for a in cmd[1:]]
                if piped is not _NOTHING:
                    thunks.append(lambda: piped)
                return self.call(name, LAZY[name], [thunks], head[2])
            args = [self.operand(a, dot) for a in cmd[1:]]
            if piped is not _NOTHING:
                args.append(piped)
            return self.call(name, FUNCS[name], args, head[2])
        if len(cmd) > 1 or piped is not _NOTHING:
            raise TemplateError(f"can't give argument to non-function {_show(head)}", head[-1])
        return self.operand(head, dot)

    def call(self, name: str, func: Any, args: list[Any], offset: int) -> Any:
        try:
            return func(*args)
        except TemplateError:
            raise
        except TypeError as exc:
            raise TemplateError(f"wrong number or type of arguments for {name}: {exc}", offset) from None
        except (ValueError, ArithmeticError, KeyError, IndexError) as exc:
            raise TemplateError(f"error calling {name}: {exc}", offset) from None

    def operand(self, op: tuple, dot: Any) -> Any:
        kind = op[0]
        if kind == "lit":
            return op[1]
        if kind == "field":
            return self.fields(dot, op[1], op[2], "." + ".".join(op[1]))
        if kind == "var":
            for scope in reversed(self.scopes):
                if op[1] in scope:
                    return self.fields(scope[op[1]], op[2], op[3], ".".join([op[1], *op[2]]))
            raise TemplateError(f"undefined variable: {op[1]}", op[3])
        if kind == "paren":
            return self.fields(self.pipe(op[1], dot), op[2], op[3], "(...)." + ".".join(op[2]))
        if kind == "func":  # a function named as an argument: call it with no arguments
            return self.command([op], dot, _NOTHING)
        raise TemplateError("unknown operand", op[-1])

    def fields(self, value: Any, names: list[str], offset: int, shown: str) -> Any:
        for name in names:
            if isinstance(value, dict):
                if name not in value:
                    raise TemplateError(f'map has no entry for key "{name}" (at <{shown}>)', offset)
                value = value[name]
            elif value is None:
                raise TemplateError(f"nil pointer evaluating {name} (at <{shown}>)", offset)
            else:
                raise TemplateError(f"can't evaluate field {name} in type {_go_type(value)} (at <{shown}>)",
                                    offset)
        return value


_NOTHING = object()


def _show(op: tuple) -> str:
    return {"lit": lambda: repr(op[1]), "field": lambda: "." + ".".join(op[1]),
            "var": lambda: op[1]}.get(op[0], lambda: "value")()


def _go_type(value: Any) -> str:
    return {bool: "bool", int: "int", float: "float64", str: "string", list: "[]interface {}"}.get(
        type(value), type(value).__name__)


def render(template: str, data: dict[str, Any], write: Any) -> None:
    """Render `template` with `data` as dot, writing text through `write` as it is produced.
    Raises TemplateError (with the offset of the construct) on a parse or execution error."""
    nodes = parse(template)
    _Renderer(data, write, None).nodes(nodes, data)


def line_col(template: str, offset: int) -> tuple[int, int]:
    """1-based line and column of an offset, for messages."""
    before = template[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1
