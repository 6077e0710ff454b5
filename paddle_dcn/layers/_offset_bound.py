"""Bounded offsets: squash predicted offsets into ``(-bound, bound)`` pixels.

Unbounded offsets are a known cause of unstable deformable training (an offset that grows
past the feature map samples only zeros and its gradient dies). Two squashing functions
that tutorials use, both odd, monotone, ``f(0) = 0`` and saturating at ``+-bound``:

* ``'tanh'``: ``bound * tanh(o)`` (slope 1 at 0, so small offsets are unchanged to first
  order);
* ``'sigmoid'``: ``bound * (2 * sigmoid(o) - 1)`` (= ``bound * tanh(o / 2)``, slope 1/2 at 0).

For huge raw offsets both give exactly ``+-bound`` (in float32 and float64) and a zero,
finite gradient. NaN stays NaN (the op then samples zero).
"""
from __future__ import annotations

from typing import Optional

import paddle

from ..ops import _checks

BOUND_FNS = ("tanh", "sigmoid")


def check(bound: Optional[float], fn: str) -> tuple[Optional[float], str]:
    """Validated ``(offset_bound, offset_bound_fn)``; ValueError naming the argument."""
    if bound is not None:
        try:
            bound = _checks.positive_number(bound, "offset_bound")
        except ValueError:
            raise ValueError(
                f"offset_bound must be None (unbounded) or a positive finite number of pixels, "
                f"got {bound!r}"
            ) from None
    if fn not in BOUND_FNS:
        raise ValueError(f"offset_bound_fn must be one of {BOUND_FNS}, got {fn!r}")
    return bound, fn


def apply(offset: paddle.Tensor, bound: Optional[float], fn: str) -> paddle.Tensor:
    """``offset`` squashed into ``[-bound, bound]`` by ``fn`` (unchanged when bound is None)."""
    if bound is None:
        return offset
    if fn == "tanh":
        return paddle.tanh(offset) * bound
    return (paddle.nn.functional.sigmoid(offset) * 2.0 - 1.0) * bound


def describe(bound: Optional[float], fn: str) -> str:
    """The ``extra_repr`` fragment (empty when unbounded)."""
    return "" if bound is None else f", offset_bound={bound}, offset_bound_fn={fn!r}"
