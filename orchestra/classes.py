"""attrs' class decorators with one ``__repr__`` shared by every class, for orchestra's own.

attrs writes and compiles a ``__repr__`` for each class it makes. Orchestra has fifty-odd
classes, nearly all imported by every ``orchestra run``, and those compiles were about
7 ms of its start (benchmarks/overhead.py measures the start). ``frozen`` and ``define``
are ``attrs.frozen`` and ``attrs.define`` without that one method; the class gets
``fields_repr`` instead, which prints what attrs' would: ``Name(field=value, ...)``, the
fields declared with ``repr=False`` left out.

Type checkers are shown attrs' own decorators, which they know: the classes keep their
``__init__`` from their fields, and ``attrs.evolve`` and ``attrs.fields`` accept them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import attrs

C = TypeVar("C", bound=type)


def _frozen(cls: C) -> C:
    """``attrs.frozen``: immutable, slotted, compared and hashed by value."""
    return _with_fields_repr(attrs.frozen(cls, repr=False))


def _define(cls: C) -> C:
    """``attrs.define``: mutable and slotted."""
    return _with_fields_repr(attrs.define(cls, repr=False))


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


def _with_fields_repr(cls: C) -> C:
    if "__repr__" not in cls.__dict__:  # a class's own __repr__ wins, as with attrs
        setattr(cls, "__repr__", fields_repr)  # noqa: B010 - a method put on a made class
    return cls
