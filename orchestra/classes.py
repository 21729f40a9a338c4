"""attrs' class decorators with ``__repr__``, ``__eq__`` and ``__hash__`` shared by every
class, for orchestra's own.

attrs writes and compiles these methods for each class it makes, with ``__init__``.
Orchestra has sixty-odd classes, nearly all imported by every ``orchestra run``: the
compiles were about 20 ms of its start, and leaving ``__eq__`` and ``__hash__`` out of
them took 44 million instructions (6 %, about 10 ms) off a 1-task run (counted with
valgrind; benchmarks/startup.py measures the start). ``frozen`` and ``define`` are ``attrs.frozen``
and ``attrs.define`` that compile only ``__init__``; the class gets functions shared by
all instead, which do what attrs' would:

- ``fields_repr``: ``Name(field=value, ...)``, the fields declared ``repr=False`` left out;
- ``fields_eq``: equal to an instance of the same class whose fields declared for
  comparison (all but ``eq=False``) are equal, in order;
- ``fields_hash`` (frozen classes; a mutable one is unhashable, as with attrs): the hash
  of the class and of the fields declared for hashing (those compared, but ``hash=False``).

A shared method is slower per call than a generated one (a loop over the field names);
none of them is on a path that runs per task often enough to show.

Type checkers are shown attrs' own decorators, which they know: the classes keep their
``__init__`` from their fields, and ``attrs.evolve`` and ``attrs.fields`` accept them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import attrs

C = TypeVar("C", bound=type)


def _frozen(cls: C) -> C:
    """``attrs.frozen``: immutable, slotted, compared and hashed by value."""
    made = _with_shared_methods(attrs.frozen(cls, repr=False, eq=False))
    names = tuple(field.name for field in attrs.fields(made) if _hashed(field))
    made.__orchestra_hash_fields__ = names  # type: ignore[attr-defined]
    if "__hash__" not in cls.__dict__:
        setattr(made, "__hash__", fields_hash)  # noqa: B010 - a method put on a made class
    return made


def _define(cls: C) -> C:
    """``attrs.define``: mutable and slotted, compared by value, unhashable."""
    made = _with_shared_methods(attrs.define(cls, repr=False, eq=False))
    if "__hash__" not in cls.__dict__:
        setattr(made, "__hash__", None)  # noqa: B010 - unhashable, as attrs makes it
    return made


if TYPE_CHECKING:  # "as": exported even to a checker that wants it said (--strict)
    from attrs import define as define
    from attrs import frozen as frozen
else:
    frozen, define = _frozen, _define


def fields_repr(self: Any) -> str:
    """``Name(field=value, ...)`` over the instance's attrs fields, as attrs writes it."""
    shown = []
    for field in type(self).__attrs_attrs__:
        if field.repr is False:
            continue
        value = getattr(self, field.name, attrs.NOTHING)
        text = field.repr(value) if callable(field.repr) else repr(value)
        shown.append(f"{field.name}={text}")
    return f"{type(self).__qualname__.rsplit('>.', 1)[-1]}({', '.join(shown)})"


def fields_eq(self: Any, other: Any) -> Any:
    """Whether ``other`` is of the same class and its compared fields are equal."""
    if other.__class__ is not self.__class__:
        return NotImplemented
    for name in self.__orchestra_eq_fields__:
        if not getattr(self, name) == getattr(other, name):
            return False
    return True


def fields_hash(self: Any) -> int:
    """The hash of the class and of the fields declared for hashing."""
    names = self.__orchestra_hash_fields__
    return hash((self.__class__, *[getattr(self, name) for name in names]))


def _hashed(field: attrs.Attribute) -> bool:
    return bool(field.eq if field.hash is None else field.hash)


def _with_shared_methods(cls: C) -> C:
    """Put the shared ``__repr__`` and ``__eq__`` on a made class (its own win, as with
    attrs), with the names of the fields ``__eq__`` compares."""
    fields = attrs.fields(cls)
    if any(field.eq_key is not None for field in fields):
        raise TypeError(f"{cls.__qualname__}: orchestra's classes compare fields as they are")
    cls.__orchestra_eq_fields__ = tuple(field.name for field in fields if field.eq)  # type: ignore[attr-defined]
    for name, method in (("__repr__", fields_repr), ("__eq__", fields_eq)):
        if name not in cls.__dict__:  # methods put on a made class
            setattr(cls, name, method)
    return cls
