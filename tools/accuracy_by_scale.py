#!/usr/bin/env python
"""Top-1 accuracy of a classifier on the built-in data, split by the size of the shape.

    python tools/accuracy_by_scale.py -c configs/dcn_r50.yml -w output/dcn_r50/best [--bins 4] [--dilation]

The eval set must be ``GeometricShapes``: every sample's shape radius (a fraction of half the
image side, drawn log-uniformly from ``scale_range``) is known without rendering it. The
samples are split into ``--bins`` groups of equal count by that radius (quantiles), and the
top-1 of each group is printed (``--json``: as JSON), so one sees where a model's errors sit:
on tiny shapes, on large ones, or evenly.

``--dilation`` adds, for a model with deformable layers (DeformConv2D, DCNv3, DCNv4), the DCN
v1 paper's footprint measure per stage and group (``paddle_dcn.engine.offsets.effective_dilation``: mean distance between
adjacent sampling locations, in pixels of the layer's input; 1.0 for a plain 3x3 conv),
averaged over the pixels on the shape and over the background separately (the shape's
coverage, box-averaged to each layer's output grid, weights the pixels). A filter that adapts
its footprint to the object shows a dilation on the shape that grows with the shape's size.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Callable, Dict, List, Optional

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from paddle_dcn.runtime import prefer_fast_mkl_path  # noqa: E402

prefer_fast_mkl_path()  # before the first MKL call: see paddle_dcn/runtime.py

import numpy as np  # noqa: E402
import paddle  # noqa: E402

from paddle_dcn.data.geometric import GeometricShapes, render_shape_mask  # noqa: E402
from paddle_dcn.engine import Trainer  # noqa: E402
from paddle_dcn.engine.offsets import capture_offsets, deformable_layers, effective_dilation, group_name  # noqa: E402
from paddle_dcn.engine.cli import add_config_args, config_from_args  # noqa: E402


def equal_count_groups(scales: np.ndarray, bins: int) -> List[np.ndarray]:
    """Sample indices split into ``bins`` groups of (nearly) equal count by ``scales [N]``,
    smallest first."""
    if not 1 <= bins <= len(scales):
        raise ValueError(f"bins must be in [1, {len(scales)}] (the number of samples), got {bins}")
    return np.array_split(np.argsort(scales, kind="stable"), bins)


def accuracy_by_bins(scales: np.ndarray, correct: np.ndarray, bins: int) -> List[Dict[str, float]]:
    """Splits the samples into ``bins`` equal-count groups by ``scales [N]`` and returns, per
    group, ``{'scale_min', 'scale_max', 'count', 'top1'}`` (top-1 in %) of ``correct [N]``."""
    if scales.shape != correct.shape or scales.ndim != 1:
        raise ValueError(f"scales and correct must be [N] each, got {scales.shape} and {correct.shape}")
    return [{"scale_min": float(scales[g].min()), "scale_max": float(scales[g].max()),
             "count": int(len(g)), "top1": float(100.0 * correct[g].mean())}
            for g in equal_count_groups(scales, bins)]


OffsetSink = Callable[[int, int, Dict[str, np.ndarray]], None]


def predict_labels(model: paddle.nn.Layer, dataset: GeometricShapes, batch_size: int = 100,
                   offsets_sink: Optional[OffsetSink] = None) -> np.ndarray:
    """``int64 [N]``: the arg-max class of every sample of ``dataset``, in order. With
    ``offsets_sink``, the same forward pass also hands it ``(start, stop, {layer name:
    offsets [B, P, 2, H, W]})`` for every batch of samples ``start:stop``."""
    model.eval()
    preds = []
    for start in range(0, len(dataset), batch_size):
        stop = min(start + batch_size, len(dataset))
        images = paddle.to_tensor(np.stack([dataset[i]["image"] for i in range(start, stop)]))
        out = {}

        def forward():
            out["logits"] = model({"image": images})["logits"]

        if offsets_sink is None:
            with paddle.no_grad():
                forward()
        else:
            offsets_sink(start, stop, capture_offsets(model, forward))
        preds.append(out["logits"].numpy().argmax(axis=1))
    return np.concatenate(preds)


def _area_weights(size: int, cells: int) -> np.ndarray:
    """``[cells, size]``: the share of pixel ``p`` (the interval [p, p+1)) in cell ``i`` (the
    interval [i*size/cells, (i+1)*size/cells)), divided by the cell's length; rows sum to 1."""
    edges = np.arange(cells + 1) * size / cells
    lo = np.maximum(edges[:-1, None], np.arange(size)[None, :])
    hi = np.minimum(edges[1:, None], np.arange(size)[None, :] + 1)
    return np.clip(hi - lo, 0, None) / (size / cells)


def _box_average(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """``[N, H, W]`` coverage -> ``[N, height, width]``, each cell the exact mean over its area
    (also when the grid does not divide the image)."""
    wy = _area_weights(mask.shape[1], height)
    wx = _area_weights(mask.shape[2], width)
    return np.einsum("ip,npq,jq->nij", wy, mask.astype(np.float64), wx)


class DilationBySize:
    """Accumulates the effective dilation of a model's deformable stages over the eval set
    (an ``offsets_sink`` for :func:`predict_labels`), weighted by the shape's coverage of each
    output pixel (on the shape) and by its complement (background); :meth:`rows` groups it."""

    def __init__(self, model: paddle.nn.Layer, dataset: GeometricShapes) -> None:
        self.layers = deformable_layers(model)
        if not self.layers:
            raise ValueError("--dilation needs a model with deformable layers that predict their offsets "
                             "(DeformConv2D, DCNv3, DCNv4: dcn_stages), found none")
        self.masks = np.stack([
            render_shape_mask(dataset.seed, dataset.split, i, dataset.image_size, dataset.num_classes,
                              dataset.scale_range, dataset.warp_range) for i in range(len(dataset))
        ])  # float32 [N, S, S]; _box_average computes in float64
        self.stages = list(dict.fromkeys(group_name(name) for name in self.layers))
        # per stage and sample: sum(d * cover), sum(cover), sum(d * (1 - cover)), sum(1 - cover)
        self.sums = {st: np.zeros((len(dataset), 4)) for st in self.stages}

    def __call__(self, start: int, stop: int, offsets: Dict[str, np.ndarray]) -> None:
        for name, off in offsets.items():
            layer = self.layers[name]
            d = effective_dilation(off, layer.kernel_size, layer.dilation)
            cover = _box_average(self.masks[start:stop], d.shape[1], d.shape[2])
            acc = self.sums[group_name(name)][start:stop]
            acc[:, 0] += (d * cover).sum(axis=(1, 2))
            acc[:, 1] += cover.sum(axis=(1, 2))
            acc[:, 2] += (d * (1 - cover)).sum(axis=(1, 2))
            acc[:, 3] += (1 - cover).sum(axis=(1, 2))

    def rows(self, scales: np.ndarray, bins: int) -> List[Dict[str, float]]:
        """``{'stage', 'scale_min', 'scale_max', 'on_shape', 'background'}`` per deformable
        stage and equal-count group by ``scales [N]``."""
        rows = []
        for st in self.stages:
            for g in equal_count_groups(scales, bins):
                acc = self.sums[st][g].sum(axis=0)
                rows.append({"stage": st, "scale_min": float(scales[g].min()), "scale_max": float(scales[g].max()),
                             "on_shape": float(acc[0] / max(acc[1], 1e-12)),
                             "background": float(acc[2] / max(acc[3], 1e-12))})
        return rows


def main(argv=None) -> List[Dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("-w", "--weights", required=True,
                        help="checkpoint (prefix, .pdparams file, or output directory)")
    parser.add_argument("--bins", type=int, default=4, help="equal-count groups by shape size (default 4)")
    parser.add_argument("--dilation", action="store_true",
                        help="also the effective dilation of the deformable stages per group")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    trainer = Trainer(config_from_args(args), mode="eval")
    dataset = trainer.eval_dataset
    if not isinstance(dataset, GeometricShapes):
        raise SystemExit(f"eval_dataset must be GeometricShapes (sizes known per sample), "
                         f"got {type(dataset).__name__}")
    trainer.load_weights(args.weights)
    model = trainer.unwrapped_model
    footprint = DilationBySize(model, dataset) if args.dilation else None
    correct = predict_labels(model, dataset, offsets_sink=footprint) == dataset.labels
    scales = dataset.shape_scales()
    rows = accuracy_by_bins(scales, correct, args.bins)
    dilation = footprint.rows(scales, args.bins) if footprint is not None else []
    if args.json:
        print(json.dumps(rows + dilation))
    else:
        print(f"{'radius / half side':<20}{'images':>8}{'top-1 (%)':>12}")
        for r in rows:
            print(f"{r['scale_min']:.2f} - {r['scale_max']:.2f}{'':<9}{r['count']:>8d}{r['top1']:>12.2f}")
        print(f"{'all':<20}{len(correct):>8d}{100.0 * correct.mean():>12.2f}")
        if dilation:
            print("\neffective dilation (1.0 = plain 3x3 conv)")
            print(f"{'stage':<20}{'radius / half side':<20}{'on shape':>10}{'background':>12}")
            for r in dilation:
                print(f"{r['stage']:<20}{r['scale_min']:.2f} - {r['scale_max']:.2f}{'':<9}"
                      f"{r['on_shape']:>10.3f}{r['background']:>12.3f}")
    return rows + dilation


if __name__ == "__main__":
    main()
