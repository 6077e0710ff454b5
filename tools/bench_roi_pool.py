"""Times paddle_dcn's RoI pooling ops side by side with Paddle's own RoI ops (CPU).

    python tools/bench_roi_pool.py [--repeats 20]

``run(repeats)`` returns one row per (op, pass); ``tools/benchmark_ops.py`` calls it and
renders the rows. Every candidate of a case runs interleaved in one process (round-robin
over repeats, after a warm-up) and the median wall time is reported.

Cases (the detection-head shape of the issue: K = 512 boxes, 256 channels, 7x7 bins, a
stride-16 map of an 800x800 image = 50x50):
- ``deform_roi_pool`` with no offset vs ``paddle.vision.ops.roi_align`` (the speed goal:
  forward+backward no slower than roi_align);
- ``deform_roi_pool`` with an offset (vs the same roi_align, for information);
- ``deform_psroi_pool`` (10 output channels x 7x7 = 490 input channels) vs
  ``paddle.vision.ops.psroi_pool``, for information.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List

import numpy as np
import paddle

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import compare  # noqa: E402
from paddle_dcn.ops import deform_psroi_pool, deform_roi_pool  # noqa: E402

NUM_BOXES, CHANNELS, POOLED, IMAGE, STRIDE = 512, 256, 7, 800, 16
PS_CHANNELS = 10




def proposal_boxes(rng: np.random.Generator, k: int, image: int) -> np.ndarray:
    """Detector-like proposals (x1, y1, x2, y2): sizes 16..400 px, clipped to the image."""
    size = np.exp(rng.uniform(np.log(16), np.log(400), (k, 2)))
    centre = rng.uniform(0, image, (k, 2))
    x1y1 = np.clip(centre - size / 2, 0, image - 1)
    x2y2 = np.clip(centre + size / 2, x1y1 + 1, image)
    return np.concatenate([x1y1, x2y2], 1).astype("float32")


def _tensor(array: np.ndarray, grad: bool) -> paddle.Tensor:
    t = paddle.to_tensor(array)
    t.stop_gradient = not grad
    return t






def run(repeats: int = 20) -> List[dict]:
    """Benchmarks the RoI ops on the CPU; returns rows {op, shape, mode, ours_ms, peer,
    peer_ms, speedup (= peer_ms / ours_ms)}."""
    paddle.set_device("cpu")
    rng = np.random.default_rng(0)
    hw = IMAGE // STRIDE
    boxes = _tensor(proposal_boxes(rng, NUM_BOXES, IMAGE), False)
    boxes_num = paddle.to_tensor(np.array([NUM_BOXES], dtype="int32"))
    scale = 1.0 / STRIDE
    x = _tensor(rng.standard_normal((1, CHANNELS, hw, hw)).astype("float32"), True)
    offset = _tensor((rng.standard_normal((NUM_BOXES, 2, POOLED, POOLED)) * 0.5)
                     .astype("float32"), True)
    shape = f"K={NUM_BOXES}, x 1x{CHANNELS}x{hw}x{hw}, {POOLED}x{POOLED}"

    def roi_align():
        return paddle.vision.ops.roi_align(x, boxes, boxes_num, POOLED, spatial_scale=scale)

    rows = compare("deform_roi_pool (no offset)", shape, "roi_align",
                    lambda: deform_roi_pool(x, boxes, boxes_num, POOLED, spatial_scale=scale),
                    roi_align, [x], repeats)
    rows += compare("deform_roi_pool (offset)", shape, "roi_align",
                     lambda: deform_roi_pool(x, boxes, boxes_num, POOLED, offset=offset,
                                             spatial_scale=scale),
                     roi_align, [x, offset], repeats)

    ps_in = PS_CHANNELS * POOLED * POOLED
    xp = _tensor(rng.standard_normal((1, ps_in, hw, hw)).astype("float32"), True)
    ps_offset = _tensor((rng.standard_normal((NUM_BOXES, 2, POOLED, POOLED)) * 0.5)
                        .astype("float32"), True)
    ps_shape = f"K={NUM_BOXES}, x 1x{ps_in}x{hw}x{hw}, {PS_CHANNELS}x{POOLED}x{POOLED}"
    rows += compare("deform_psroi_pool (offset)", ps_shape, "psroi_pool",
                     lambda: deform_psroi_pool(xp, boxes, boxes_num, PS_CHANNELS, POOLED,
                                               offset=ps_offset, spatial_scale=scale),
                     lambda: paddle.vision.ops.psroi_pool(xp, boxes, boxes_num, POOLED,
                                                          spatial_scale=scale),
                     [xp, ps_offset], repeats)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    print(f"{'op':30s} {'shape':40s} {'pass':17s} {'ours ms':>9s} {'peer':>11s} "
          f"{'peer ms':>9s} {'peer/ours':>9s}")
    for r in run(args.repeats):
        print(f"{r['op']:30s} {r['shape']:40s} {r['mode']:17s} {r['ours_ms']:9.1f} "
              f"{r['peer']:>11s} {r['peer_ms']:9.1f} {r['speedup']:8.2f}x")


if __name__ == "__main__":
    main()
