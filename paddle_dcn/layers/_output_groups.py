"""Offset fields that split the OUTPUT channels (TensorFlow ``DeformableConvLayer``'s
``num_deformable_group``), run as one call of the deformable conv op.

In the DCN papers (and mmcv, Paddle) ``deformable_groups`` splits the input channels: field g
moves the samples of input channels ``[g*C_in/dg, (g+1)*C_in/dg)`` for every output channel.
In the TensorFlow form, S fields split the output channels: output channels
``[s*C_out/S, (s+1)*C_out/S)`` read every input channel (of their conv group), all sampled at
field s. The sampling then differs per split, so each split needs its own sampled copy of the
input; the batched formulation makes those copies explicit and lets the op's grouped
convolution keep them apart:

* let ``T = lcm(S, groups)``; the output channels fall into T equal units, unit t lying in
  split ``t // (T/S)`` and conv group ``t // (T/groups)``;
* the op input is, for t = 0..T-1, the channels of conv group ``t // (T/groups)`` of x
  (``T * C_in/groups`` channels; x itself when ``T == groups``), and the op runs with
  ``groups = T`` and ``deformable_groups = S``: op group t reads exactly its unit's copy, and
  deformable group s covers the copies of the units of split s;
* the weight ``[C_out, C_in/groups, kh, kw]`` is the layer's own weight unchanged (op group t
  takes its rows ``[t*C_out/T, (t+1)*C_out/T)``), and the offset layout is the op's with S
  deformable groups: field s is channels ``[2*s*kh*kw, 2*(s+1)*kh*kw)``.

Cost: the sampling (im2col) work and the column buffer grow T/groups times (inherent: each
split samples the input at its own positions); the GEMM FLOPs are those of the plain conv.
"""
from __future__ import annotations

import math

import paddle
from paddle.jit.marker import unified

from . import _args


def op_groups(splits: int, groups: int) -> tuple[int, int]:
    """``(T, repeat)``: op groups ``T = lcm(splits, groups)`` and copies per conv group."""
    total = splits * groups // math.gcd(splits, groups)
    return total, total // groups


@unified  # runs as plain Python in dygraph and on static Values under to_static
def repeat_groups(args: _args.OpArgs, x: paddle.Tensor) -> paddle.Tensor:
    """The op input for output splits: each conv group of ``x`` repeated ``args.repeat``
    times in place (``[N, T*C_in/groups, H, W]``); ``x`` itself when ``repeat == 1``."""
    if args.repeat == 1:
        return x
    if args.conv_groups == 1:
        return paddle.tile(x, [1, args.repeat, 1, 1])
    parts = paddle.split(x, args.conv_groups, axis=1)
    return paddle.concat([p for p in parts for _ in range(args.repeat)], axis=1)
