#!/usr/bin/env python
"""Latency of an exported model: onnxruntime (ONNX file) against Paddle Inference, CPU.

    python tools/benchmark_export.py [-c configs/dcn_r50.yml configs/r50.yml] [-w WEIGHTS]
                                     [--batch 1 8] [--threads 1] [--repeats 30]
                                     [--write docs/benchmarks.md]

For each config: exports the model both ways (``paddle_dcn.engine.deploy.export`` and
``onnx_deploy.export``, the code behind tools/export.py) into a temporary directory, then times
one forward pass of a batch of the built-in eval data per format, interleaved in one process
(round-robin over repeats after a warm-up, medians), on ``--threads`` threads each (onnxruntime
``intra_op_num_threads``, Paddle Inference ``cpu_math_library_num_threads``, oneDNN on as
Paddle Inference's default). Without ``-w`` the weights are the config's initialisation with
the offset branches perturbed (std 0.05; DCNv3/DCNv4: their offset and weight projections), so
that the deformable convs sample off the grid as a trained model does. The DCNv3/DCNv4
aggregations are DeformConv nodes too (docs/export.md), counted in the table. It also reports the largest difference between the two outputs.
With ``--write`` the table replaces the ``onnx-export`` section of the file.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from paddle_dcn.runtime import prefer_fast_mkl_path  # noqa: E402

prefer_fast_mkl_path()  # as the other tools: MKL's AVX2 path for Paddle on AMD CPUs

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import paddle  # noqa: E402

from bench_common import interleaved_medians, write_section  # noqa: E402
from paddle_dcn import DCNv3, DCNv4, inference  # noqa: E402
from paddle_dcn.config import load_config  # noqa: E402
from paddle_dcn.engine import deploy, onnx_deploy  # noqa: E402
from paddle_dcn.registry import DATASETS, MODELS, build  # noqa: E402

SECTION = "onnx-export"
DEFAULT = ["configs/dcn_r50.yml", "configs/r50.yml", "configs/dcnv3_r50.yml", "configs/dcnv4_flash_r50.yml"]


def _offset_predictors(model: paddle.nn.Layer) -> list:
    """The parameters that predict offsets and masks / aggregation weights (zero at init)."""
    params = [p for name, p in model.named_parameters() if "conv_offset" in name]  # DeformConv2D
    for layer in model.sublayers():
        if isinstance(layer, DCNv3):
            params += layer.offset.parameters() + layer.mask.parameters()
        elif isinstance(layer, DCNv4):
            params += layer.offset_mask.parameters()
    return params


def _weights(cfg: dict, directory: str) -> str:
    paddle.seed(0)
    model = build(MODELS, cfg["model"])
    for p in _offset_predictors(model):
        p.set_value(paddle.randn(p.shape, dtype=p.dtype) * 0.05)
    path = os.path.join(directory, "weights.pdparams")
    paddle.save(model.state_dict(), path)
    return path


def measure(config: str, weights: str, batches, threads: int, repeats: int) -> list:
    cfg = load_config(config)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        weights = weights or _weights(cfg, tmp)
        deploy.export(cfg, weights, os.path.join(tmp, "paddle"))
        result = onnx_deploy.export(cfg, weights, os.path.join(tmp, "onnx"))
        predictor = inference.create_predictor(os.path.join(tmp, "paddle", deploy.MODEL_PREFIX), cpu_threads=threads)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(result["onnx"], options, providers=["CPUExecutionProvider"])
        n_deform = sum(1 for n in __import__("onnx").load(result["onnx"]).graph.node if n.op_type == "DeformConv")
        dataset = build(DATASETS, {**cfg["eval_dataset"], "num_samples": max(batches)})
        for batch in batches:
            images = np.stack([dataset[i]["image"] for i in range(batch)]).astype(np.float32)
            ort_out = session.run(None, {"image": images})[0]
            paddle_out = inference.run_predictor(predictor, [images])[0]
            times = interleaved_medians({
                "onnxruntime": lambda: session.run(None, {"image": images}),
                "paddle": lambda: inference.run_predictor(predictor, [images]),
            }, repeats, warmup=3)
            rows.append(dict(config=cfg["_name_"], batch=batch, deform_convs=n_deform, ort_ms=times["onnxruntime"],
                             paddle_ms=times["paddle"], max_diff=float(np.max(np.abs(ort_out - paddle_out)))))
    return rows


def table(rows: list, threads: int, repeats: int) -> str:
    header = (f"Measured {datetime.date.today().isoformat()}, {platform.machine()}, {os.cpu_count()} CPU cores, "
              f"Python {platform.python_version()}, paddlepaddle {paddle.__version__}, onnxruntime {ort.__version__}, "
              f"{threads} thread(s) each; medians of {repeats} interleaved repeats "
              "(`python tools/benchmark_export.py --write docs/benchmarks.md`).\n\n"
              "| model | DeformConv nodes | batch | onnxruntime ms | Paddle Inference ms | Paddle / onnxruntime | "
              "max abs diff of the probabilities |\n|---|---:|---:|---:|---:|---:|---:|\n")
    lines = [f"| {r['config']} | {r['deform_convs']} | {r['batch']} | {r['ort_ms']:.2f} | {r['paddle_ms']:.2f} | "
             f"{r['paddle_ms'] / r['ort_ms']:.2f}x | {r['max_diff']:.1e} |" for r in rows]
    return header + "\n".join(lines) + "\n"


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--configs", nargs="+", default=DEFAULT)
    parser.add_argument("-w", "--weights", default=None, help="one checkpoint for every config (default: see above)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--write", default=None, help="markdown file whose onnx-export section is replaced")
    args = parser.parse_args(argv)
    rows = [r for c in args.configs for r in measure(c, args.weights, args.batch, args.threads, args.repeats)]
    text = table(rows, args.threads, args.repeats)
    print(text)
    if args.write:
        write_section(args.write, text.rstrip("\n"), SECTION)
    return rows


if __name__ == "__main__":
    main()
