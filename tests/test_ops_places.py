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


class _GpuPlace(_ForeignPlace):
    def is_cpu_place(self):
        return False


class _HostPlace:
    """A host-memory place other than x's (pinned memory, say): allowed for boxes."""

    def __eq__(self, other):
        return isinstance(other, _HostPlace)

    def is_cpu_place(self):
        return True


def test_roi_boxes_must_be_in_host_memory_or_on_x_device():
    """The RoI ops copy boxes and boxes_num to x's device; a copy from another GPU would not
    wait for that GPU's streams, so it is refused (CPU boxes with GPU features are fine)."""
    x = paddle.ones([1, 2, 3, 3])
    with pytest.raises(ValueError, match=r"boxes is on Place\(gpu:1\) but x is on Place\(cpu\): boxes must "
                                         r"be in host memory or on x's device"):
        _checks.expect_host_or_same_place("x", x, boxes=SimpleNamespace(place=_GpuPlace()),
                                          boxes_num=paddle.ones([1], "int32"))
    with pytest.raises(ValueError, match=r"boxes_num is on Place\(gpu:1\)"):
        _checks.expect_host_or_same_place("x", x, boxes=paddle.ones([1, 4]),
                                          boxes_num=SimpleNamespace(place=_GpuPlace()))
    _checks.expect_host_or_same_place("x", x, boxes=SimpleNamespace(place=_HostPlace()),
                                      boxes_num=paddle.ones([1], "int32"))


def test_roi_ops_apply_the_box_place_rule(monkeypatch):
    from paddle_dcn import ops

    seen = []
    monkeypatch.setattr(_checks, "expect_host_or_same_place",
                        lambda ref, x, **named: seen.append((ref, sorted(named))))
    x = paddle.rand([1, 2, 6, 6])
    boxes, boxes_num = paddle.to_tensor([[0.0, 0.0, 4.0, 4.0]]), paddle.to_tensor([1], "int32")
    ops.deform_roi_pool(x, boxes, boxes_num, 2)
    ops.deform_psroi_pool(paddle.rand([1, 8, 6, 6]), boxes, boxes_num, 2, 2)
    assert seen == [("x", ["boxes", "boxes_num"])] * 2
