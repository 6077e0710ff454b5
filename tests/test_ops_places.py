"""The one-device rule of the op wrappers (the C++ bindings hold it too).

A CPU build of Paddle has no second device, so a stand-in object carries the foreign
place; the check reads nothing but ``.place``.
"""
from __future__ import annotations

from types import SimpleNamespace

import paddle
import pytest

from paddle_dcn.ops import _checks


class _ForeignPlace:
    """A place equal to no CPU place (what a GPU tensor's place is to a CPU tensor's)."""

    def __eq__(self, other):
        return isinstance(other, _ForeignPlace)

    def __str__(self):
        return "Place(gpu:1)"


def test_inputs_on_another_place_name_both_places():
    x = paddle.ones([1, 2, 3, 3])
    offset = SimpleNamespace(place=_ForeignPlace())
    with pytest.raises(ValueError, match=r"offset is on Place\(gpu:1\) but x is on Place\(cpu\)"):
        _checks.expect_same_place("x", x, weight=paddle.ones([1]), offset=offset)


def test_inputs_on_the_same_place_and_absent_ones_pass():
    x = paddle.ones([1, 2, 3, 3])
    _checks.expect_same_place("x", x, offset=paddle.zeros([1]), mask=None, bias=None)
