"""attrs' class decorators with one ``__repr__`` shared by every class, for orchestra's own.

attrs writes and compiles a ``__repr__`` for each class it makes. Orchestra has fifty-odd
classes, nearly all imported by every ``orchestra run``, and those compiles were about
7 ms of its start (benchmarks/overhead.py measures the start). ``frozen`` and ``define``
are ``attrs.frozen`` and ``attrs.define`` without that one method; the class gets
``fields_repr`` instead, which prints what attrs' would: ``Name(field=value, ...)``, the
fields declared with ``repr=False`` left out.
"""

from __future__ import annotations

import sys
from typing import Any, TypeVar

import attrs

if sys.version_info >= (3, 11):
    from typing import dataclass_transform
else:  # Python 3.10: type checkers then see plain functions

    def dataclass_transform(**_: Any) -> Any:
        return lambda function: function


C = TypeVar("C", bound=type)


# dataclass_transform tells type checkers what attrs' own decorators tell them: the
# class gets an __init__ from its fields (attrs.field declares one with options)
@dataclass_transform(frozen_default=True, field_specifiers=(attrs.field,))
def frozen(cls: C) -> C:
    """``attrs.frozen``: immutable, slotted, compared and hashed by value."""
    return _with_fields_repr(attrs.frozen(cls, repr=False))


@dataclass_transform(field_specifiers=(attrs.field,))
def define(cls: C) -> C:
    """``attrs.define``: mutable and slotted."""
    return _with_fields_repr(attrs.define(cls, repr=False))


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
        cls.__repr__ = fields_repr
    return cls
