"""Typed tuples: ``typing.NamedTuple``'s class syntax without importing ``typing``.

``pyvmm boot`` is measured as a whole process, interpreter start-up included (docs/bench.md,
"Start-up budget"), and ``import typing`` alone costs more than half of the interpreter's
own start: it imports ``re``, which imports ``enum``. The records a boot builds (its
machine config, the kernel image, the boot request, the boot-info block) are declared
with ``@typed_tuple`` instead of ``class X(NamedTuple)``: the same fields with the same
types and defaults, made into the same ``collections.namedtuple`` that typing.NamedTuple
makes, with the class's methods and properties kept. Modules a plain boot does not
import (a snapshot's vCPU state, the debugger, the benchmarks, the container side) use
typing.NamedTuple.
"""

from __future__ import annotations

from collections import namedtuple

# What a class statement puts in every class's namespace, not to be copied onto the tuple.
_CLASS_MACHINERY = ("__dict__", "__weakref__")


def typed_tuple(cls: type) -> type:
    """A namedtuple with ``cls``'s annotated fields, in order, and their defaults.

    As with typing.NamedTuple, a field with a default may only be followed by others with
    one: the tuple's constructor takes its arguments in field order."""
    namespace = cls.__dict__
    fields = list(namespace.get("__annotations__", {}))
    defaults = [namespace[name] for name in fields if name in namespace]
    for name in fields[len(fields) - len(defaults) :]:
        if name not in namespace:
            raise TypeError(f"{cls.__name__}.{name}: a field without a default after one with")
    base = namedtuple(cls.__name__, fields, defaults=defaults, module=cls.__module__)
    body = {
        key: value
        for key, value in namespace.items()
        if key not in fields and key not in _CLASS_MACHINERY
    }
    body["__slots__"] = ()
    return type(cls.__name__, (base,), body)
