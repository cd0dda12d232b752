"""`import yaml` without compiling PyYAML's regular expressions, which dagu's loader never uses.

PyYAML compiles some twenty patterns when it is imported: the YAML 1.1 implicit
resolvers (bool, int, float, timestamp, ...), the timestamp constructor's, and
`Reader.NON_PRINTABLE`, a negated class reaching U+10FFFF that alone took
3.4-5.6 ms.  dagu's loader composes nodes with libyaml and types plain scalars
itself (YAML 1.2 core schema, compiler/loader.py), so none of them is ever
matched on a `dagu validate`, `compile` or first `start`; compiling them was
2-7 ms of each (issue 17).

So while PyYAML is imported here, a pattern compiled by one of its modules is a
stand-in that compiles the same text with the same flags on its first use: code
that does use PyYAML's resolvers or reader (dagu.settings' `yaml.safe_load` of a
config.yaml, a plugin) gets exactly PyYAML's pattern, a little later.
`re.compile` is swapped only for the import, and calls from other modules (other
threads included) compile as usual.
"""

from __future__ import annotations

import re
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any


class CompiledOnFirstUse:
    """A pattern PyYAML compiles at import, compiled when an attribute (`match`, `search`, ...)
    is first read; then the real `re.Pattern` answers everything."""

    __slots__ = ("_source", "_compile", "_pattern")

    def __init__(self, source: Any, flags: int, compile_now: Any) -> None:
        self._source = (source, flags)
        self._compile = compile_now
        self._pattern: re.Pattern | None = None

    @property
    def compiled(self) -> bool:
        return self._pattern is not None

    def __getattr__(self, name: str) -> Any:
        if self._pattern is None:
            self._pattern = self._compile(*self._source)
        return getattr(self._pattern, name)


def _import_pyyaml() -> Any:
    if "yaml" in sys.modules:
        return sys.modules["yaml"]
    compile_now = re.compile

    def compile_later(pattern: Any, flags: int = 0) -> Any:
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller == "yaml" or caller.startswith("yaml."):
            return CompiledOnFirstUse(pattern, flags, compile_now)
        return compile_now(pattern, flags)

    re.compile = compile_later
    try:
        import yaml
    finally:
        re.compile = compile_now
    return yaml


yaml = _import_pyyaml()

__all__ = ["yaml"]
