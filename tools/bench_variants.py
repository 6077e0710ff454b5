"""Times the deformable variants (issue 7) side by side with their usual formulations (CPU).

    python tools/bench_variants.py [--repeats 20]

``run(repeats)`` returns one row per (case, pass) in the format of ``tools/bench_roi_pool.py``
({op, shape, mode, ours_ms, peer, peer_ms, speedup = peer_ms / ours_ms});
``tools/benchmark_ops.py`` can render them with its ``roi_table``. Every candidate of a case
runs interleaved in one process (round-robin over repeats, after a warm-up); medians reported.

Cases:
- per-channel deformable sampling, offsets given: ``paddle_dcn.ops.deform_sample2d`` (our
  deformable conv op, 1x1 kernel, one deformable group and one conv group per channel) vs the
  ``grid_sample`` formulation (each channel an image of its own, grid built from the offsets;
  the base grid precomputed). Backward: gradients wrt x and the offsets.
- the whole ``DeformableSampling2D`` layer (3x3 offset conv + sampling) vs the same layer with
  ``grid_sample`` sampling (for information: the offset conv is shared work).
- ``DeformConv2D(deformable_groups_over='output')``, one op call over a repeated input vs a
  Python loop of one deformable conv per output split (for information).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List

import numpy as np
import paddle
import paddle.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import compare  # noqa: E402
from paddle_dcn import DeformableSampling2D, DeformConv2D  # noqa: E402
from paddle_dcn.ops import deform_conv2d, deform_sample2d  # noqa: E402

SAMPLING_SHAPES = [(2, 64, 56, 56), (4, 256, 14, 14)]
LAYER_SHAPE = (2, 64, 56, 56)
OUTPUT_GROUPS_CASE = dict(n=2, c=32, hw=28, splits=(4, 32))




class GridSampleSampling:
    """Per-channel sampling with ``grid_sample`` (align_corners=True, zeros padding: the same
    positions and border convention as ``deform_sample2d``), base grid precomputed."""

    def __init__(self, h: int, w: int) -> None:
        self.h, self.w = h, w
        self.rows = paddle.arange(h, dtype="float32").reshape([1, 1, h, 1])
        self.cols = paddle.arange(w, dtype="float32").reshape([1, 1, 1, w])

    def __call__(self, x: paddle.Tensor, offset: paddle.Tensor) -> paddle.Tensor:
        n, c, h, w = x.shape
        o = offset.reshape([n, c, 2, h, w])
        gx = (self.cols + o[:, :, 1]) * (2.0 / (w - 1)) - 1.0
        gy = (self.rows + o[:, :, 0]) * (2.0 / (h - 1)) - 1.0
        grid = paddle.stack([gx, gy], axis=-1).reshape([n * c, h, w, 2])
        out = F.grid_sample(x.reshape([n * c, 1, h, w]), grid, mode="bilinear",
                            padding_mode="zeros", align_corners=True)
        return out.reshape([n, c, h, w])


def _tensor(array: np.ndarray, grad: bool = True) -> paddle.Tensor:
    t = paddle.to_tensor(array.astype("float32"))
    t.stop_gradient = not grad
    return t






def sampling_rows(rng: np.random.Generator, repeats: int) -> List[dict]:
    rows = []
    for n, c, h, w in SAMPLING_SHAPES:
        x = _tensor(rng.standard_normal((n, c, h, w)))
        offset = _tensor(rng.uniform(-2, 2, (n, 2 * c, h, w)))
        peer = GridSampleSampling(h, w)
        rows += compare("deform_sample2d", f"{n}x{c}x{h}x{w}", "grid_sample",
                         lambda: deform_sample2d(x, offset), lambda: peer(x, offset),
                         [x, offset], repeats)
    return rows


def layer_rows(rng: np.random.Generator, repeats: int) -> List[dict]:
    n, c, h, w = LAYER_SHAPE
    layer = DeformableSampling2D(c)
    layer.conv_offset.weight.set_value(
        (rng.standard_normal(layer.conv_offset.weight.shape) * 0.05).astype("float32"))
    x = _tensor(rng.standard_normal((n, c, h, w)))
    peer = GridSampleSampling(h, w)
    leaves = [x] + list(layer.parameters())
    return compare("DeformableSampling2D (layer)", f"{n}x{c}x{h}x{w}", "grid_sample",
                    lambda: layer(x), lambda: peer(x, layer.conv_offset(x)), leaves, repeats)


def output_groups_rows(rng: np.random.Generator, repeats: int) -> List[dict]:
    n, c, hw = OUTPUT_GROUPS_CASE["n"], OUTPUT_GROUPS_CASE["c"], OUTPUT_GROUPS_CASE["hw"]
    x = _tensor(rng.standard_normal((n, c, hw, hw)))
    rows = []
    for splits in OUTPUT_GROUPS_CASE["splits"]:
        layer = DeformConv2D(c, c, 3, padding=1, modulated=False, deformable_groups=splits,
                             deformable_groups_over="output", offset_branch=False)
        offset = _tensor(rng.uniform(-2, 2, (n, 2 * 9 * splits, hw, hw)))

        def loop():
            weights = paddle.split(layer.weight, splits, axis=0)
            biases = paddle.split(layer.bias, splits, axis=0)
            fields = paddle.split(offset, splits, axis=1)
            return paddle.concat([deform_conv2d(x, fields[s], weights[s], biases[s], padding=1)
                                  for s in range(splits)], axis=1)

        rows += compare(f"DeformConv2D over outputs, {splits} splits", f"{n}x{c}x{hw}x{hw} 3x3",
                         "loop over splits", lambda: layer(x, offset), loop,
                         [x, offset, layer.weight, layer.bias], repeats)
    return rows


def run(repeats: int = 20) -> List[dict]:
    """Benchmarks the variants on the CPU; returns rows {op, shape, mode, ours_ms, peer,
    peer_ms, speedup (= peer_ms / ours_ms)}."""
    paddle.set_device("cpu")
    rng = np.random.default_rng(0)
    return sampling_rows(rng, repeats) + layer_rows(rng, repeats) + output_groups_rows(rng, repeats)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    print(f"{'op':40s} {'shape':20s} {'pass':17s} {'ours ms':>9s} {'peer':>17s} "
          f"{'peer ms':>9s} {'peer/ours':>9s}")
    for r in run(args.repeats):
        print(f"{r['op']:40s} {r['shape']:20s} {r['mode']:17s} {r['ours_ms']:9.1f} "
              f"{r['peer']:>17s} {r['peer_ms']:9.1f} {r['speedup']:8.2f}x")


if __name__ == "__main__":
    main()
