"""Data classes for the start-up path: the subset of `dataclasses` Corral uses, without
its cost.

`import dataclasses` pulls in inspect, ast, dis and tokenize, and each decorated class
compiles three generated functions with exec: together ~15-20 ms of every `corral`
command, more than the interpreter's own start. The engine's and the store's records
(ContainerConfig, ContainerRecord, State, ...) are built here instead: the decorator
only reads the class's annotations into a field table, and one shared `__init__`,
`__repr__`, `__eq__` and (for frozen classes) `__setattr__`/`__hash__` work from that
table. Same API and semantics for what is supported: `dataclass` (optionally
`frozen=True`), `field(default=, default_factory=, compare=)`, `fields`, `asdict`,
`replace`, inheritance of fields, `__post_init__`; anything else (ClassVar, InitVar,
kw_only, slots, order) is refused at decoration time rather than silently ignored.
"""

from __future__ import annotations

TYPE_CHECKING = False  # `typing` costs ~3 ms to import: only for the type checkers
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a frozen record (as dataclasses.FrozenInstanceError)."""


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class Field:
    """One field: its name, declared type (a string: annotations are postponed), and
    default or default factory."""

    __slots__ = ("compare", "default", "default_factory", "name", "repr", "type")

    def __init__(self, default: Any = MISSING, default_factory: Any = MISSING,
                 compare: bool = True, repr: bool = True) -> None:
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.default = default
        self.default_factory = default_factory
        self.compare = compare
        self.repr = repr
        self.name = ""
        self.type: Any = None

    def __repr__(self) -> str:
        return f"Field(name={self.name!r}, type={self.type!r}, default={self.default!r})"


def field(*, default: Any = MISSING, default_factory: Any = MISSING, compare: bool = True,
          repr: bool = True) -> Any:
    return Field(default, default_factory, compare, repr)


_FIELDS = "__record_fields__"  # not dataclasses' name: its functions refuse these records
_REFUSED_TYPES = ("ClassVar", "typing.ClassVar", "InitVar", "dataclasses.InitVar")


def dataclass(cls: Any = None, /, *, frozen: bool = False) -> Any:
    """@dataclass or @dataclass(frozen=True)."""

    def wrap(cls: Any) -> Any:
        return _process(cls, frozen)

    return wrap if cls is None else wrap(cls)


def _process(cls: Any, frozen: bool) -> Any:
    table: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        table.update(getattr(base, _FIELDS, None) or {})
    # (not inspect.get_annotations: inspect is what this module avoids importing)
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():  # noqa: RUF063
        if isinstance(annotation, str) and annotation.startswith(_REFUSED_TYPES):
            raise TypeError(f"{cls.__name__}.{name}: {annotation} is not supported by "
                            "corral.records_light")
        value = cls.__dict__.get(name, MISSING)
        spec = value if isinstance(value, Field) else Field(default=value)
        spec.name, spec.type = name, annotation
        if isinstance(spec.default, (list, dict, set)):
            raise ValueError(f"{cls.__name__}.{name}: mutable default "  # noqa: TRY004 - as dataclasses
                             f"{type(spec.default).__name__}: use default_factory")
        if spec.default is MISSING:
            if name in cls.__dict__:
                delattr(cls, name)  # a field(default_factory=...) left on the class
        else:
            setattr(cls, name, spec.default)
        table[name] = spec
    required_after_default = False
    for spec in table.values():
        has_default = spec.default is not MISSING or spec.default_factory is not MISSING
        if required_after_default and not has_default:
            raise TypeError(f"{cls.__name__}: non-default argument {spec.name!r} follows "
                            "default argument")
        required_after_default = required_after_default or has_default
    setattr(cls, _FIELDS, table)
    cls.__init__ = _init
    if "__repr__" not in cls.__dict__:
        cls.__repr__ = _repr
    if "__eq__" not in cls.__dict__:
        cls.__eq__ = _eq
    if frozen:
        cls.__setattr__ = _frozen_setattr
        cls.__delattr__ = _frozen_delattr
        cls.__hash__ = _hash
    else:
        cls.__hash__ = None  # mutable and comparable: unhashable, as dataclasses does
    cls.__match_args__ = tuple(table)
    return cls


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    table: dict[str, Field] = getattr(type(self), _FIELDS)
    if len(args) > len(table):
        raise TypeError(f"{type(self).__name__}() takes {len(table)} positional arguments "
                        f"but {len(args)} were given")
    set_value = object.__setattr__
    for spec, value in zip(table.values(), args):
        if spec.name in kwargs:
            raise TypeError(f"{type(self).__name__}() got multiple values for argument "
                            f"{spec.name!r}")
        set_value(self, spec.name, value)
    missing = []
    for spec in list(table.values())[len(args):]:
        if spec.name in kwargs:
            set_value(self, spec.name, kwargs.pop(spec.name))
        elif spec.default is not MISSING:
            set_value(self, spec.name, spec.default)
        elif spec.default_factory is not MISSING:
            set_value(self, spec.name, spec.default_factory())
        else:
            missing.append(spec.name)
    if kwargs:
        raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument "
                        f"{next(iter(kwargs))!r}")
    if missing:
        raise TypeError(f"{type(self).__name__}() missing required argument(s): "
                        + ", ".join(repr(name) for name in missing))
    post_init = getattr(self, "__post_init__", None)
    if post_init is not None:
        post_init()


def _repr(self: Any) -> str:
    table: dict[str, Field] = getattr(type(self), _FIELDS)
    inner = ", ".join(f"{name}={getattr(self, name)!r}" for name, spec in table.items()
                      if spec.repr)
    return f"{type(self).__qualname__}({inner})"


def _compared(self: Any) -> tuple:
    return tuple(getattr(self, name) for name, spec in getattr(type(self), _FIELDS).items()
                 if spec.compare)


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is not self.__class__:
        return NotImplemented
    return _compared(self) == _compared(other)


def _hash(self: Any) -> int:
    return hash(_compared(self))


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


def is_dataclass(obj: Any) -> bool:
    return hasattr(obj, _FIELDS)


def fields(obj: Any) -> tuple[Field, ...]:
    table = getattr(obj, _FIELDS, None)
    if table is None:
        raise TypeError("must be called with a dataclass type or instance")
    return tuple(table.values())


def asdict(obj: Any, *, dict_factory: Callable[..., Any] = dict) -> Any:
    """Recursively, as dataclasses.asdict: records, lists, tuples and dicts are copied;
    other values are shared (dataclasses deep-copies them; Corral's records hold only
    immutable leaves)."""
    if not is_dataclass(obj) or isinstance(obj, type):
        raise TypeError("asdict() should be called on dataclass instances")
    return _asdict(obj, dict_factory)


def _asdict(value: Any, dict_factory: Callable[..., Any]) -> Any:
    if hasattr(type(value), _FIELDS):
        return dict_factory([(name, _asdict(getattr(value, name), dict_factory))
                             for name in getattr(type(value), _FIELDS)])
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
        return type(value)(*[_asdict(v, dict_factory) for v in value])
    if isinstance(value, (list, tuple)):
        return type(value)(_asdict(v, dict_factory) for v in value)
    if isinstance(value, dict):
        return type(value)((_asdict(k, dict_factory), _asdict(v, dict_factory))
                           for k, v in value.items())
    if isinstance(value, (str, int, float, bool, bytes, type(None))):
        return value
    import copy  # a leaf that may be mutable: as dataclasses does

    return copy.deepcopy(value)


def replace(obj: Any, /, **changes: Any) -> Any:
    """A new record with `changes` applied (dataclasses.replace)."""
    table = getattr(type(obj), _FIELDS, None)
    if table is None:
        raise TypeError("replace() should be called on dataclass instances")
    for name in changes:
        if name not in table:
            raise TypeError(f"{type(obj).__name__}.__init__() got an unexpected keyword "
                            f"argument {name!r}")
    values = {name: getattr(obj, name) for name in table if name not in changes}
    return type(obj)(**values, **changes)
