"""@typed_tuple makes what typing.NamedTuple makes, from the same class statement."""

from __future__ import annotations

import pickle
from typing import NamedTuple

import pytest

from vmm.typedtuple import typed_tuple


@typed_tuple
class Window:
    """A docstring that stays."""

    base: int
    size: int = 0x1000
    name: str = "window"

    @property
    def end(self) -> int:
        return self.base + self.size


class WindowNT(NamedTuple):
    base: int
    size: int = 0x1000
    name: str = "window"


def test_a_typed_tuple_is_the_namedtuple_typing_would_make():
    w = Window(0x2000)
    assert w == WindowNT(0x2000) == (0x2000, 0x1000, "window")
    assert Window._fields == WindowNT._fields
    assert Window._field_defaults == WindowNT._field_defaults
    assert repr(w) == "Window(base=8192, size=4096, name='window')"
    assert w.end == 0x3000 and Window.__doc__ == "A docstring that stays."
    moved = w._replace(base=0)
    assert type(moved) is Window and moved.end == 0x1000
    assert pickle.loads(pickle.dumps(w)) == w
    with pytest.raises(AttributeError):
        w.extra = 1  # no __dict__: as light as the tuple itself


def test_a_field_without_a_default_after_one_with_is_refused():
    with pytest.raises(TypeError, match="Bad.size: a field without a default"):

        @typed_tuple
        class Bad:
            base: int = 0
            size: int
