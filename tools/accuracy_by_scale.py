#!/usr/bin/env python
"""Top-1 accuracy of a classifier on the built-in data, split by the size of the shape.

    python tools/accuracy_by_scale.py -c configs/dcn_r50.yml -w output/dcn_r50/best [--bins 4]

The eval set must be ``GeometricShapes``: every sample's shape radius (a fraction of half the
image side, drawn log-uniformly from ``scale_range``) is known without rendering it. The
samples are split into ``--bins`` groups of equal count by that radius (quantiles), and the
top-1 of each group is printed (``--json``: as JSON), so one sees where a model's errors sit:
on tiny shapes, on large ones, or evenly.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Dict, List

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from paddle_dcn.runtime import prefer_fast_mkl_path  # noqa: E402

prefer_fast_mkl_path()  # before the first MKL call: see paddle_dcn/runtime.py

import numpy as np  # noqa: E402
import paddle  # noqa: E402

from paddle_dcn.data.geometric import GeometricShapes  # noqa: E402
from paddle_dcn.engine import Trainer  # noqa: E402
from paddle_dcn.engine.cli import add_config_args, config_from_args  # noqa: E402


def accuracy_by_bins(scales: np.ndarray, correct: np.ndarray, bins: int) -> List[Dict[str, float]]:
    """Splits the samples into ``bins`` equal-count groups by ``scales [N]`` and returns, per
    group, ``{'scale_min', 'scale_max', 'count', 'top1'}`` (top-1 in %) of ``correct [N]``."""
    if scales.shape != correct.shape or scales.ndim != 1:
        raise ValueError(f"scales and correct must be [N] each, got {scales.shape} and {correct.shape}")
    if not 1 <= bins <= len(scales):
        raise ValueError(f"bins must be in [1, {len(scales)}] (the number of samples), got {bins}")
    order = np.argsort(scales, kind="stable")
    rows = []
    for group in np.array_split(order, bins):
        rows.append({"scale_min": float(scales[group].min()), "scale_max": float(scales[group].max()),
                     "count": int(len(group)), "top1": float(100.0 * correct[group].mean())})
    return rows


def predict_labels(model: paddle.nn.Layer, dataset: GeometricShapes, batch_size: int = 100) -> np.ndarray:
    """``int64 [N]``: the arg-max class of every sample of ``dataset``, in order."""
    model.eval()
    preds = []
    with paddle.no_grad():
        for start in range(0, len(dataset), batch_size):
            images = np.stack([dataset[i]["image"] for i in range(start, min(start + batch_size, len(dataset)))])
            logits = model({"image": paddle.to_tensor(images)})["logits"]
            preds.append(logits.numpy().argmax(axis=1))
    return np.concatenate(preds)


def main(argv=None) -> List[Dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("-w", "--weights", required=True,
                        help="checkpoint (prefix, .pdparams file, or output directory)")
    parser.add_argument("--bins", type=int, default=4, help="equal-count groups by shape size (default 4)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    trainer = Trainer(config_from_args(args), mode="eval")
    dataset = trainer.eval_dataset
    if not isinstance(dataset, GeometricShapes):
        raise SystemExit(f"eval_dataset must be GeometricShapes (sizes known per sample), "
                         f"got {type(dataset).__name__}")
    trainer.load_weights(args.weights)
    correct = predict_labels(trainer.unwrapped_model, dataset) == dataset.labels
    rows = accuracy_by_bins(dataset.shape_scales(), correct, args.bins)
    if args.json:
        print(json.dumps(rows))
    else:
        print("radius / half side   images   top-1 (%)")
        for r in rows:
            print(f"{r['scale_min']:.2f} - {r['scale_max']:.2f}   {r['count']:>9d}   {r['top1']:9.2f}")
        print(f"all                  {len(correct):>9d}   {100.0 * correct.mean():9.2f}")
    return rows


if __name__ == "__main__":
    main()
