"""What a `dagu` command does before it imports anything: defer modules it will not use, and
hold the garbage collector back, since what it imports is never garbage.

Importing `dagu start`'s modules allocates some 16,000 objects, none of which
is ever freed, and the cyclic collector walks them again and again as they
come: 2 ms of a 10-step run's start-up (issue 17).  So the CLI raises the
threshold of the youngest generation while a command sets itself up, and
whoever then runs for long (the supervisor, before its first step) puts the
threshold back and moves everything alive so far into the permanent
generation (`gc.freeze`), which later collections skip.  A command that never
says it is set up keeps collecting, only less often: nothing can grow without
bound.
"""

from __future__ import annotations

import gc
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any

START_UP_THRESHOLD = 100_000  # allocations before a young collection, while setting up


def setting_up() -> None:
    """Collect rarely from now on (cli.main, before a command imports anything)."""
    gc.set_threshold(START_UP_THRESHOLD, *gc.get_threshold()[1:])


def set_up(default_young: int = 700) -> None:
    """Start-up is over: what is alive now stays (frozen); the usual thresholds again."""
    if gc.get_threshold()[0] == START_UP_THRESHOLD:
        gc.freeze()
        gc.set_threshold(default_young, *gc.get_threshold()[1:])


# Standard library modules that others import at their top but use only in a few functions,
# which `dagu start` and `dagu compile` never call: `inspect`, imported by `dataclasses` for a
# docstring that `dagu.spec.records.dataclass` writes itself (with ast, dis, tokenize and
# linecache it is 3-4 ms of a 10-step `dagu start`), and `ipaddress`, imported by
# `urllib.parse` (through `pathlib`) to check bracketed hosts in URLs (1-1.5 ms), `gettext`,
# whose stand-in answers argparse's two calls itself (`_answer_untranslated`), and `base64`
# (with struct and binascii), which PyYAML imports for !!binary values, which dagu's loader
# never builds.
DEFERRED_MODULES = ("inspect", "ipaddress", "gettext", "base64")


def defer_modules(names: tuple[str, ...] = DEFERRED_MODULES) -> None:
    """Make each of these modules load on first use instead of when another module imports it.

    Until then the module is a stand-in whose attributes (PEP 562 `__getattr__`) import the
    real one, so code that does use it (a traceback with --debug, the web server's libraries)
    gets all of it.  (The standard library's LazyLoader cannot do this on 3.11: the `import`
    statement reads `__spec__`, which makes it load at once.)"""
    import types

    for name in names:
        if name not in sys.modules:
            module = _stand_in(types.ModuleType(name, f"the standard library's {name}, imported on first use"))
            if name == "gettext":
                _answer_untranslated(module)
            sys.modules[name] = module


def _stand_in(module: Any) -> Any:
    name = module.__name__

    def real_attribute(attribute: str) -> Any:
        if attribute == "__path__":  # asked by every `from NAME import x`: none of these is a package
            raise AttributeError(f"module {name!r} has no attribute '__path__'")
        return getattr(_load(module), attribute)

    module.__getattr__ = real_attribute
    return module


def _load(module: Any) -> Any:
    """The real module behind a stand-in, imported now (or found, once it is)."""
    name = module.__name__
    if sys.modules.get(name) is not module:
        return sys.modules.get(name) or __import__(name)
    del sys.modules[name]
    import importlib

    real = importlib.import_module(name)
    # Code that imported the stand-in keeps it: from now on it finds every name directly.
    vars(module).pop("__getattr__", None)
    vars(module).update(vars(real))
    return real


def _answer_untranslated(module: Any) -> None:
    """Let gettext's stand-in answer `gettext` and `ngettext` itself while no catalog can exist.

    argparse imports both at its top and calls `gettext` for its own words each time a parser
    is built; the real one imports `locale` and looks for a catalog of the default domain
    under `sys.base_prefix/share/locale` for each call: 1-2 ms of every command.  Where that
    directory does not exist (a pyenv or python.org build, the one executable) no catalog can
    be found and gettext returns the message as given, so the stand-in does the same.
    Where it exists, or once anything else of gettext is used (a `bindtextdomain` that could
    point elsewhere), the real module answers."""
    import os

    catalogs = os.path.join(sys.base_prefix, "share", "locale")

    def real() -> Any:
        if sys.modules.get("gettext") is module and not os.path.isdir(catalogs):
            return None
        return _load(module)

    def gettext(message: str) -> str:
        loaded = real()
        return message if loaded is None else loaded.gettext(message)

    def ngettext(singular: str, plural: str, n: int) -> str:
        loaded = real()
        if loaded is None:
            return singular if n == 1 else plural
        return loaded.ngettext(singular, plural, n)

    module.gettext, module.ngettext = gettext, ngettext
