"""`dataclass`, as the standard library's, but cheap to define.

Why this exists: `dataclasses.dataclass` writes the source text of `__init__`,
`__repr__` and `__eq__` (and, for a frozen class, `__setattr__`, `__delattr__`
and `__hash__`) for every class and compiles it with `exec` while the module
is imported: about 0.3 ms for a plain class and 0.5 ms for a frozen one on the
2-core bench host.  `dagu start` defines some sixty dataclasses before its
first step runs, so that compiling was a fifth of a small run's start-up
(issue 17).

This decorator keeps the standard one for what it is good at: it collects the
fields, so `fields()`, `asdict()`, `replace()` and `is_dataclass()` work
unchanged, and it is asked for no methods.  `__repr__`, `__eq__`, `__hash__` and
the frozen guards are then small closures over the field names, which need no
compiling; only `__init__`, whose speed and signature matter, is still
generated.  The rules of the standard decorator are kept: methods written in
the class body win, eq without frozen makes instances unhashable, a frozen
instance refuses assignment with `FrozenInstanceError`, `__post_init__` runs
last.  Any option or shape beyond init/repr/eq/frozen on a class with no
dataclass bases (order, kw_only, InitVar, unsafe_hash, frozen with slots,
inheritance) goes to the standard decorator untouched.

Standard library only: the plan module (which imports nothing else of ours)
uses it.
"""

from __future__ import annotations

import dataclasses
import reprlib
from abc import ABCMeta
from copy import copy
from types import MemberDescriptorType
from operator import attrgetter
from collections.abc import Callable

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any

_CHEAP_OPTIONS = frozenset({"init", "repr", "eq", "frozen", "slots"})
_MISSING = dataclasses.MISSING
_FIELD_MARKER = getattr(dataclasses, "_FIELD", None)  # what marks a Field as a field (not a ClassVar)


class _Factory:
    """The default shown in `__init__`'s signature for a field with a default factory."""

    def __repr__(self) -> str:
        return "<factory>"


_HAS_FACTORY = _Factory()
_GENERIC_CALLS = 32  # instances made by the generic __init__ before the compiled one (_add_init)


def dataclass(cls: type | None = None, /, **options: Any) -> Any:
    """Drop-in for `dataclasses.dataclass`; see the module docstring for what differs (only cost)."""
    if cls is None:
        return lambda c: dataclass(c, **options)
    if not _CHEAP_OPTIONS.issuperset(options) or _needs_the_standard_decorator(cls, options):
        return dataclasses.dataclass(cls, **options)
    init, with_repr = options.get("init", True), options.get("repr", True)
    eq, frozen = options.get("eq", True), options.get("frozen", False)
    doc_missing = cls.__doc__ is None
    fields = _collect_fields(cls)
    slots = options.get("slots", False)
    if slots:
        cls = _with_slots(cls, fields)
    if any(f.kw_only is True for f in fields):
        raise TypeError(f"{cls.__qualname__}: keyword-only fields need dataclasses.dataclass")
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    params.init, params.repr, params.eq, params.frozen = init, with_repr, eq, frozen
    if hasattr(params, "slots"):  # 3.12 and later record it
        params.slots = slots
    if doc_missing:
        cls.__doc__ = f"{cls.__name__}({_add_init(cls, fields, frozen, slots)})" if init else cls.__name__
    elif init:
        _add_init(cls, fields, frozen, slots)
    if with_repr:
        _set_new(cls, "__repr__", _repr_for(cls, tuple(f.name for f in fields if f.repr)))
    if eq:
        _set_new(cls, "__eq__", _eq_for(cls, tuple(f.name for f in fields if f.compare)))
    if frozen:
        _add_frozen_guards(cls, frozenset(f.name for f in fields))
    _set_hash(cls, fields, eq, frozen)
    return cls


def _needs_the_standard_decorator(cls: type, options: dict[str, Any]) -> bool:
    """Shapes whose rules this module does not repeat: they keep the standard decorator."""
    if _TEMPLATE_PARAMS is None or isinstance(cls, ABCMeta):
        return True
    if any(hasattr(base, "__dataclass_fields__") for base in cls.__mro__[1:]):
        return True
    if options.get("frozen") and ("__setattr__" in cls.__dict__ or "__delattr__" in cls.__dict__):
        return True  # the standard decorator refuses these with a TypeError
    if options.get("frozen") and options.get("slots"):
        return True  # pickling those needs the standard decorator's __getstate__/__setstate__
    if "__slots__" in cls.__dict__:
        return True
    annotations = cls.__dict__.get("__annotations__", {})
    if "self" in annotations:
        return True
    for annotation in annotations.values():
        text = annotation if isinstance(annotation, str) else repr(annotation)
        if "InitVar" in text or "KW_ONLY" in text or "ClassVar" in text or annotation is dataclasses.KW_ONLY:
            return True
    return False


def _standard_params() -> Any:
    """The standard decorator's record of a class's options (`__dataclass_params__`), taken from
    one class it decorates here; None where its private field marker is missing (another Python:
    then every class goes to the standard decorator)."""
    if _FIELD_MARKER is None:
        return None

    class Template:
        """Decorated once, for its `__dataclass_params__`."""

    dataclasses.dataclass(Template, init=False, repr=False, eq=False)
    return Template.__dataclass_params__  # type: ignore[attr-defined]


_TEMPLATE_PARAMS = _standard_params()


def _collect_fields(cls: type) -> tuple[dataclasses.Field, ...]:
    """What `dataclasses.dataclass(cls, init=False, repr=False, eq=False)` records, for the
    shapes this module takes (no dataclass bases, no ClassVar, InitVar or KW_ONLY, no ABC):
    the fields, `__dataclass_fields__`, `__dataclass_params__` and `__match_args__`.

    The standard decorator takes ~50 us a class, mostly to look for ClassVar and InitVar in
    each string annotation with a regular expression and to scan the class for abstract
    methods; `dagu start` defines some fifty classes before its first step, so that was a
    tenth of its imports (issue 17).  The shapes that need those checks are sent to the
    standard decorator instead (`_needs_the_standard_decorator`), and tests/spec/
    test_records.py compares what both record, field by field."""
    annotations = cls.__dict__.get("__annotations__", {})
    fields: dict[str, dataclasses.Field] = {}
    for name, annotation in annotations.items():
        default = getattr(cls, name, _MISSING)
        if isinstance(default, dataclasses.Field):
            f = default
        else:
            if isinstance(default, MemberDescriptorType):  # a slot of a base class: no default
                default = _MISSING
            f = dataclasses.field(default=default)
        f.name, f.type, f._field_type = name, annotation, _FIELD_MARKER  # type: ignore[attr-defined]
        if f.kw_only is _MISSING:
            f.kw_only = False
        if f.default.__class__.__hash__ is None:  # list, dict, set: shared by every instance
            raise ValueError(f"mutable default {type(f.default)} for field {name} is not allowed: "
                             "use default_factory")
        fields[name] = f
        if isinstance(default, dataclasses.Field):
            if f.default is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, f.default)
    for name, value in cls.__dict__.items():
        if isinstance(value, dataclasses.Field) and name not in annotations:
            raise TypeError(f"{name!r} is a field but has no type annotation")
    cls.__dataclass_fields__ = fields  # type: ignore[attr-defined]
    cls.__dataclass_params__ = copy(_TEMPLATE_PARAMS)  # type: ignore[attr-defined]
    if "__match_args__" not in cls.__dict__:
        cls.__match_args__ = tuple(f.name for f in fields.values() if f.init)  # type: ignore[attr-defined]
    return tuple(fields.values())


def _with_slots(cls: type, fields: tuple[dataclasses.Field, ...]) -> type:
    """The class made again with `__slots__` for its fields, as the standard decorator's
    `slots=True` does (before any method is added, so none refers to the first class).  The
    defaults stay in the fields, which `__init__` reads: a slot cannot also be a class attribute."""
    names = tuple(f.name for f in fields)
    namespace = {key: value for key, value in cls.__dict__.items()
                 if key not in names and key not in ("__dict__", "__weakref__")}
    namespace["__slots__"] = names
    made = type(cls)(cls.__name__, cls.__bases__, namespace)
    made.__qualname__ = cls.__qualname__
    return made


def _set_new(cls: type, name: str, method: Callable[..., Any]) -> None:
    """Add a method unless the class body wrote its own, as the standard decorator does."""
    if name not in cls.__dict__:
        method.__qualname__ = f"{cls.__qualname__}.{name}"
        setattr(cls, name, method)


def _add_init(cls: type, fields: tuple[dataclasses.Field, ...], frozen: bool, slots: bool = False) -> str:
    """Give the class an `__init__` that is compiled once the class is used much; returns the
    parameter names, for a missing docstring.

    Compiling an `__init__` costs 45-90 us, and most plan, state and engine classes are made
    a few times by a given command, if at all (a plain `dagu start` makes a third of the ones
    it imports, most of them once).  So the first `_GENERIC_CALLS` instances are made by a
    generic `__init__` (~1 us a call against ~0.1 us), which hands any call it does not bind
    cleanly (a missing, extra or repeated argument) to the compiled one, so the errors are the
    standard ones; after that the class gets the compiled one.  Until it is compiled the class
    carries a `__signature__` hook that compiles it, so `inspect.signature` sees the real one."""
    if "__init__" in cls.__dict__:
        return ", ".join(f.name for f in fields if f.init)
    names: dict[str, Any] = {"__dataclass_HAS_FACTORY__": _HAS_FACTORY}
    annotations: dict[str, Any] = {}
    params, lines = [], []
    seen_default = None
    steps: list[tuple[str, bool, Any, Any]] = []  # what the generic __init__ does, field by field
    for f in fields:
        default_name, factory_name = f"__dataclass_dflt_{f.name}__", f"__dataclass_fact_{f.name}__"
        if f.default_factory is not _MISSING:
            names[factory_name] = f.default_factory
        if f.init:
            if f.default is not _MISSING:
                names[default_name] = f.default
                params.append(f"{f.name}={default_name}")
                seen_default = f.name
            elif f.default_factory is not _MISSING:
                params.append(f"{f.name}=__dataclass_HAS_FACTORY__")
                lines.append(f"    if {f.name} is __dataclass_HAS_FACTORY__: {f.name} = {factory_name}()")
                seen_default = f.name
            else:
                if seen_default is not None:
                    raise TypeError(f"non-default argument {f.name!r} follows default argument")
                params.append(f.name)
            value = f.name
            annotations[f.name] = f.type
            steps.append((f.name, True, f.default, f.default_factory))
        elif f.default_factory is not _MISSING:
            value = f"{factory_name}()"
            steps.append((f.name, False, _MISSING, f.default_factory))
        elif slots and f.default is not _MISSING:  # no class attribute holds it: set it here
            names[default_name] = f.default
            value = default_name
            steps.append((f.name, False, f.default, _MISSING))
        else:
            continue  # reading it falls back to the class attribute holding the default
        lines.append(f"    __dataclass_dict__[{f.name!r}] = {value}" if frozen else f"    self.{f.name} = {value}")
    if frozen:
        lines.insert(0, "    __dataclass_dict__ = self.__dict__")
    if hasattr(cls, "__post_init__"):
        lines.append("    self.__post_init__()")
    source = f"def __init__(self{', ' if params else ''}{', '.join(params)}):\n" + ("\n".join(lines) or "    pass")
    compiled: list[Callable[..., None]] = []

    def compile_init() -> Callable[..., None]:
        if not compiled:
            exec(source, names)
            real = names["__init__"]
            real.__annotations__ = {**annotations, "return": None}
            real.__qualname__ = f"{cls.__qualname__}.__init__"
            compiled.append(real)
            if cls.__dict__.get("__init__") is __init__:
                cls.__init__ = real  # type: ignore[misc]
            if isinstance(cls.__dict__.get("__signature__"), _CompilesInit):
                delattr(cls, "__signature__")
        return compiled[0]

    param_names = tuple(annotations)
    param_set = frozenset(param_names)
    post_init = hasattr(cls, "__post_init__")
    calls = [0]

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        calls[0] += 1
        if calls[0] > _GENERIC_CALLS or len(args) > len(param_names) or not param_set.issuperset(kwargs):
            return compile_init()(self, *args, **kwargs)
        given = dict(zip(param_names, args))
        if kwargs:
            if not given.keys().isdisjoint(kwargs):
                return compile_init()(self, *args, **kwargs)
            given.update(kwargs)
        values = []
        for name, is_param, default, factory in steps:
            if is_param and name in given:
                value = given[name]
                if value is _HAS_FACTORY and factory is not _MISSING:
                    value = factory()
            elif default is not _MISSING:
                value = default
            elif factory is not _MISSING:
                value = factory()
            else:  # a required argument is missing: the compiled one says so, as the standard one would
                return compile_init()(self, *args, **kwargs)
            values.append((name, value))
        if frozen:
            self.__dict__.update(values)
        else:
            for name, value in values:
                setattr(self, name, value)
        if post_init:
            self.__post_init__()

    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = __init__  # type: ignore[misc]
    if "__signature__" not in cls.__dict__:
        cls.__signature__ = _CompilesInit(compile_init)  # type: ignore[attr-defined]
    return ", ".join(annotations)


class _CompilesInit:
    """`__signature__` of a class whose `__init__` is not compiled yet: reading it (as
    `inspect.signature` does first) compiles it and gives None, so inspect goes on to the real
    `__init__`, exactly as for the standard decorator's classes."""

    def __init__(self, compile_init: Callable[[], Any]) -> None:
        self._compile_init = compile_init

    def __get__(self, instance: Any, owner: type) -> None:
        self._compile_init()
        return None


def _repr_for(cls: type, names: tuple[str, ...]) -> Callable[[Any], str]:
    def __repr__(self: Any) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{type(self).__qualname__}({shown})"
    return reprlib.recursive_repr()(__repr__)


def _values_of(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """A getter of the field values as one tuple (tuples compare items by identity, then ==)."""
    if not names:
        return lambda instance: ()
    if len(names) == 1:
        only = names[0]
        return lambda instance: (getattr(instance, only),)
    return attrgetter(*names)


def _eq_for(cls: type, names: tuple[str, ...]) -> Callable[[Any, Any], Any]:
    values = _values_of(names)

    def __eq__(self: Any, other: Any) -> Any:
        if other.__class__ is self.__class__:
            return values(self) == values(other)
        return NotImplemented
    return __eq__


def _add_frozen_guards(cls: type, names: frozenset[str]) -> None:
    def __setattr__(self: Any, name: str, value: Any) -> None:
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)

    def __delattr__(self: Any, name: str) -> None:
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)
    _set_new(cls, "__setattr__", __setattr__)
    _set_new(cls, "__delattr__", __delattr__)


def _set_hash(cls: type, fields: tuple[dataclasses.Field, ...], eq: bool, frozen: bool) -> None:
    """The standard table for unsafe_hash=False: eq+frozen hashes the fields, eq alone is unhashable."""
    class_hash = cls.__dict__.get("__hash__", _MISSING)
    explicit = not (class_hash is _MISSING or (class_hash is None and "__eq__" in cls.__dict__))
    if not eq or explicit:
        return
    if not frozen:
        cls.__hash__ = None  # type: ignore[assignment]
        return
    values = _values_of(tuple(f.name for f in fields if (f.compare if f.hash is None else f.hash)))

    def __hash__(self: Any) -> int:
        return hash(values(self))
    __hash__.__qualname__ = f"{cls.__qualname__}.__hash__"
    cls.__hash__ = __hash__  # type: ignore[assignment]
