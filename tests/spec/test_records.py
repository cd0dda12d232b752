"""dagu.spec.records.dataclass behaves as dataclasses.dataclass: each shape is built by both and compared."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
from dataclasses import field
from typing import Any, Callable, ClassVar

import pytest

from dagu.spec import records


@records.dataclass(frozen=True)
class Pickled:
    """At module level, so pickle finds it."""
    name: str
    parts: tuple = ()


def shapes(decorate: Callable[..., Any]) -> dict[str, type]:
    """The same class bodies, decorated by `decorate`."""

    @decorate
    class Plain:
        """A plain one."""
        name: str
        count: int = 0
        tags: list = field(default_factory=list)

    @decorate(frozen=True)
    class Frozen:
        """A frozen one."""
        name: str
        parts: tuple = ()
        hidden: str = field(default="x", repr=False, compare=False)

    @decorate(eq=False)
    class ByIdentity:
        """Compared by identity."""
        value: int = 1

    @decorate
    class WithPostInit:
        """Derives a field."""
        first: str
        second: str = "b"
        both: str = field(init=False, default="")
        log: list = field(init=False, default_factory=list)

        def __post_init__(self) -> None:
            self.both = self.first + self.second

    @decorate
    class OwnRepr:
        """Writes its own repr and hash."""
        value: int

        def __repr__(self) -> str:
            return "own"

        def __hash__(self) -> int:
            return 7

    @decorate
    class NoDoc:
        value: int
        other: str = "o"

    @decorate(frozen=True)
    class Empty:
        """No fields."""

    return {c.__name__: c for c in (Plain, Frozen, ByIdentity, WithPostInit, OwnRepr, NoDoc, Empty)}


OURS = shapes(records.dataclass)
THEIRS = shapes(dataclasses.dataclass)


def both(name: str) -> tuple[type, type]:
    return OURS[name], THEIRS[name]


def test_init_signature_repr_and_fields_match() -> None:
    for name in OURS:
        ours, theirs = both(name)
        assert str(inspect.signature(ours)) == str(inspect.signature(theirs)), name
        assert [f.name for f in dataclasses.fields(ours)] == [f.name for f in dataclasses.fields(theirs)]
        assert dataclasses.is_dataclass(ours)
        assert ours.__match_args__ == theirs.__match_args__
    ours, theirs = both("Plain")
    assert repr(ours("a", 2)).split("(", 1)[1] == repr(theirs("a", 2)).split("(", 1)[1] == "name='a', count=2, tags=[])"
    assert ours("a").tags is not ours("a").tags, "a default factory runs per instance"
    assert repr(both("Frozen")[0]("n")).endswith("Frozen(name='n', parts=())"), "repr=False fields are left out"
    assert repr(both("OwnRepr")[0](1)) == "own"
    assert OURS["NoDoc"].__doc__ == "NoDoc(value, other)", "a class without a docstring is described by its fields"


def test_equality_and_hashing_follow_the_standard_table() -> None:
    for name in ("Plain", "Frozen", "ByIdentity", "WithPostInit", "OwnRepr", "Empty"):
        ours, theirs = both(name)
        assert (ours.__hash__ is None) == (theirs.__hash__ is None), name
    plain = OURS["Plain"]
    assert plain("a", 1) == plain("a", 1) and plain("a", 1) != plain("a", 2)
    assert plain("a") != THEIRS["Plain"]("a"), "another class is never equal"
    with pytest.raises(TypeError):
        hash(plain("a"))
    frozen = OURS["Frozen"]
    assert frozen("n", (1,), hidden="y") == frozen("n", (1,), hidden="z"), "compare=False fields are not compared"
    assert hash(frozen("n", (1,))) == hash(THEIRS["Frozen"]("n", (1,)))
    assert len({frozen("n"), frozen("n"), frozen("m")}) == 2
    by_identity = OURS["ByIdentity"]
    assert by_identity() != by_identity() and hash(by_identity()) != hash(by_identity())
    assert hash(OURS["OwnRepr"](3)) == 7
    nan = float("nan")
    assert (plain("a", nan) == plain("a", nan)) == (THEIRS["Plain"]("a", nan) == THEIRS["Plain"]("a", nan))


def test_frozen_instances_refuse_assignment_and_deletion() -> None:
    value = OURS["Frozen"]("n")
    with pytest.raises(dataclasses.FrozenInstanceError):
        value.name = "m"
    with pytest.raises(dataclasses.FrozenInstanceError):
        del value.parts
    with pytest.raises(dataclasses.FrozenInstanceError):
        value.anything_else = 1
    assert dataclasses.replace(value, name="m").name == "m"
    assert pickle.loads(pickle.dumps(Pickled("n", (1,)))) == Pickled("n", (1,))


def test_post_init_and_init_false_fields() -> None:
    ours, theirs = both("WithPostInit")
    assert ours("a").both == theirs("a").both == "ab"
    assert ours("a").log == [] and ours("a").log is not ours("a").log
    with pytest.raises(TypeError):
        ours("a", "b", "c")
    assert dataclasses.asdict(ours("x", "y")) == dataclasses.asdict(theirs("x", "y"))


def test_other_options_and_shapes_go_to_the_standard_decorator() -> None:
    @records.dataclass(order=True)
    class Ordered:
        """Sortable."""
        rank: int

    assert sorted([Ordered(2), Ordered(1)])[0].rank == 1

    @records.dataclass(frozen=True, slots=True)
    class Slotted:
        """Slots."""
        a: int

    assert Slotted.__slots__ == ("a",)

    @records.dataclass(frozen=True)
    class Base:
        """A base."""
        a: int

    @records.dataclass(frozen=True)
    class Child(Base):
        """Inherits a field."""
        b: int = 0

    assert Child(1, 2).a == 1 and [f.name for f in dataclasses.fields(Child)] == ["a", "b"]
    with pytest.raises(TypeError):
        @records.dataclass
        class NotFrozenChild(Base):
            """The standard rule: a non-frozen class cannot inherit from a frozen one."""
            c: int = 0


def test_a_field_without_default_after_one_with_is_refused_as_the_standard_does() -> None:
    with pytest.raises(TypeError, match="non-default argument 'b' follows default argument"):
        @records.dataclass
        class Wrong:
            """Bad order."""
            a: int = 0
            b: int


def test_init_is_generic_for_the_first_instances_then_compiled_and_behaves_the_same() -> None:
    """The decorator compiles no __init__: the first instances are made by a generic one, which
    leaves every call it cannot bind cleanly to the compiled one (so errors are the standard
    ones); the class gets the compiled one after records._GENERIC_CALLS instances, or when
    inspect.signature asks first."""
    import inspect as inspect_module

    def make(decorate: Callable[..., Any], **options: Any) -> type:
        @decorate(**options)
        class Late:
            """Never instantiated until the test says so."""
            name: str
            parts: tuple = ()
            tags: list = field(default_factory=list)
            seen: list = field(default_factory=list, init=False)

            def __post_init__(self) -> None:
                self.seen.append(self.name)
        return Late

    def compiled(cls: type) -> bool:
        return not cls.__init__.__code__.co_flags & inspect_module.CO_VARARGS

    for options in ({}, {"frozen": True}, {"slots": True}):
        ours, theirs = make(records.dataclass, **options), make(dataclasses.dataclass, **options)
        assert not compiled(ours), "not compiled by the decorator"

        class Sub(ours):  # a plain subclass made before the first instance inherits the same __init__
            pass

        assert Sub("s").name == "s" and Sub("s") != ours("s"), "eq compares the class, as the standard one does"
        for args, kwargs in [(("a",), {}), (("a", (1,)), {}), ((), {"name": "k", "tags": [2]}),
                             (("a",), {"parts": (3,)})]:
            mine, standard = ours(*args, **kwargs), theirs(*args, **kwargs)
            assert repr(mine).split("(", 1)[1] == repr(standard).split("(", 1)[1], (options, args, kwargs)
            assert mine.seen == [mine.name], "__post_init__ runs last"
        assert ours("a").tags is not ours("a").tags, "a factory runs per instance"
        for args, kwargs in [((), {}), (("a", (), [], 4), {}), (("a",), {"name": "b"}), (("a",), {"other": 1}),
                             (("a",), {"seen": []})]:
            with pytest.raises(TypeError) as mine_error:
                ours(*args, **kwargs)
            with pytest.raises(TypeError) as standard_error:
                theirs(*args, **kwargs)
            assert str(mine_error.value).split("__init__()")[1] == str(standard_error.value).split("__init__()")[1]
        assert compiled(ours), "the first call the generic one could not bind compiled it"

    busy = make(records.dataclass)
    for n in range(records._GENERIC_CALLS):
        assert busy(str(n)).name == str(n)
    assert not compiled(busy)
    busy("one more")
    assert compiled(busy) and "__signature__" not in busy.__dict__, "compiled for good, the hook gone"
    fresh = make(records.dataclass)
    assert str(inspect.signature(fresh)) == str(inspect.signature(make(dataclasses.dataclass)))
    assert compiled(fresh), "signature compiles it first"


FIELD_ATTRIBUTES = ("name", "type", "default", "default_factory", "init", "repr", "hash", "compare", "metadata",
                    "kw_only", "_field_type")


def test_fields_params_and_class_attributes_are_recorded_as_the_standard_decorator_records_them() -> None:
    """The fields are collected without the standard decorator (issue 17); what it records must not differ."""
    for name in OURS:
        ours, theirs = both(name)
        assert list(ours.__dataclass_fields__) == list(theirs.__dataclass_fields__), name
        for field_name, mine in ours.__dataclass_fields__.items():
            standard = theirs.__dataclass_fields__[field_name]
            for attribute in FIELD_ATTRIBUTES:
                assert getattr(mine, attribute) == getattr(standard, attribute), (name, field_name, attribute)
        for option in ("init", "repr", "eq", "order", "unsafe_hash", "frozen"):
            assert getattr(ours.__dataclass_params__, option) == getattr(theirs.__dataclass_params__, option), \
                (name, option)
        for attribute in ("count", "parts", "hidden", "value", "second", "both", "log", "tags"):
            assert (attribute in vars(ours)) == (attribute in vars(theirs)), (name, attribute)
            if attribute in vars(ours):
                assert vars(ours)[attribute] == vars(theirs)[attribute], (name, attribute)
    assert OURS["Plain"].__dataclass_params__ is not OURS["Frozen"].__dataclass_params__


def test_the_standard_decorators_refusals_are_kept() -> None:
    for decorate in (records.dataclass, dataclasses.dataclass):
        with pytest.raises(ValueError, match="mutable default <class 'list'> for field items is not allowed"):
            @decorate
            class Shared:
                """A list shared by every instance."""
                items: list = []  # noqa: RUF012

        with pytest.raises(TypeError, match="'loose' is a field but has no type annotation"):
            @decorate
            class Unannotated:
                """A field() with no annotation."""
                loose = field(default=1)


def test_classvar_and_abstract_shapes_go_to_the_standard_decorator() -> None:
    from abc import ABC, abstractmethod

    @records.dataclass
    class Counted:
        """A ClassVar is no field."""
        registry: ClassVar[dict] = {}
        value: int = 0

    assert [f.name for f in dataclasses.fields(Counted)] == ["value"] and Counted.registry == {}

    @records.dataclass
    class Shape(ABC):
        """An abstract record."""
        sides: int

        @abstractmethod
        def area(self) -> float: ...

    @records.dataclass
    class Square(Shape):
        """A concrete one."""
        def area(self) -> float:
            return float(self.sides)

    with pytest.raises(TypeError):
        Shape(4)
    assert Square(4).area() == 4.0


def slotted_shapes(decorate: Callable[..., Any]) -> dict[str, type]:
    @decorate(slots=True)
    class Counters:
        """Plain, with slots (the process sampler's shape)."""
        start: int
        ppid: int
        user: int = 0
        hidden: int = field(default=5, init=False)
        seen: list = field(default_factory=list)

    @decorate(slots=True, eq=False)
    class Handle:
        """Compared by identity."""
        fd: int = -1

    return {c.__name__: c for c in (Counters, Handle)}


def test_slots_are_made_as_the_standard_decorator_makes_them() -> None:
    ours, theirs = slotted_shapes(records.dataclass), slotted_shapes(dataclasses.dataclass)
    for name in ours:
        mine, standard = ours[name], theirs[name]
        assert isinstance(vars(mine).get("__signature__"), records._CompilesInit), "made here, not by the standard"
        assert mine.__slots__ == standard.__slots__, name
        assert str(inspect.signature(mine)) == str(inspect.signature(standard)), name
        assert (mine.__hash__ is None) == (standard.__hash__ is None), name
        assert mine.__match_args__ == standard.__match_args__
        for field_name, made in mine.__dataclass_fields__.items():
            for attribute in FIELD_ATTRIBUTES:
                assert getattr(made, attribute) == getattr(standard.__dataclass_fields__[field_name], attribute)
        assert not any(isinstance(vars(mine).get(n), (int, list)) for n in mine.__slots__), "no class attribute"
    counters = ours["Counters"](1, 2)
    assert (counters.user, counters.hidden, counters.seen) == (0, 5, []), "init=False default set in __init__"
    assert repr(counters).endswith("Counters(start=1, ppid=2, user=0, hidden=5, seen=[])")
    assert counters == ours["Counters"](1, 2) and counters != ours["Counters"](1, 3)
    with pytest.raises(AttributeError):
        counters.other = 1  # no __dict__
    assert not hasattr(counters, "__dict__")
    handle = ours["Handle"]()
    assert handle.fd == -1 and handle != ours["Handle"]()
