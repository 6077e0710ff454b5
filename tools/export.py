#!/usr/bin/env python
"""Export trained weights as a Paddle Inference model (paddle_dcn's custom ops) or as ONNX.

    python tools/export.py -c configs/dcn_r50.yml -w output/dcn_r50/best [--output output_inference]
    python tools/export.py -c configs/dcn_r50.yml -w output/dcn_r50/best --format onnx [--opset 22]

Writes output_inference/<config name>/{model.json, model.pdiparams, infer_cfg.yml}, or with
--format onnx {model.onnx, infer_cfg.yml's onnx: section; both formats of one checkpoint can
share the directory}: a standard ONNX graph (every deformable conv one
DeformConv node), checked with onnx.checker and run against Paddle in onnxruntime before it is
kept (needs `pip install -e .[export]`). Detectors export backbone + FPN + RPN head in ONNX.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from paddle_dcn.runtime import prefer_fast_mkl_path  # noqa: E402

prefer_fast_mkl_path()  # before the first MKL call: see paddle_dcn/runtime.py

from paddle_dcn.engine import deploy  # noqa: E402
from paddle_dcn.engine.cli import add_config_args, config_from_args  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("-w", "--weights", required=True, help="checkpoint (prefix, .pdparams or directory)")
    parser.add_argument("--output", default="output_inference",
                        help="parent directory; the model goes to <output>/<config name>/")
    parser.add_argument("--format", choices=("paddle", "onnx"), default="paddle",
                        help="paddle: Paddle Inference model (default); onnx: standard ONNX file")
    parser.add_argument("--opset", type=int, default=19, help="ONNX opset (19-22; DeformConv needs 19)")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    out_dir = os.path.join(args.output, cfg["_name_"])
    if args.format == "onnx":
        return export_onnx(cfg, args, out_dir)
    paths = deploy.export(cfg, args.weights, out_dir)
    print(f"exported {cfg['_name_']} to {out_dir}:")
    for key, path in paths.items():
        print(f"  {key}: {path}")
    if cfg.get("task") == "detection":
        print("load it with:\n"
              "  from paddle_dcn.engine.det_deploy import InferenceDetector\n"
              f"  bbox = InferenceDetector('{out_dir}').detect(image_uint8_hwc)  # rows (class, score, x1, y1, x2, y2)\n"
              f"or: python tools/infer.py --model-dir {out_dir} --input IMAGE_OR_FOLDER --threshold 0.5")
        return paths
    print("load it with:\n"
          "  import paddle_dcn.inference as inf; import paddle_dcn\n"
          f"  predictor = inf.create_predictor('{os.path.join(out_dir, deploy.MODEL_PREFIX)}')"
          "  # registers paddle_dcn's ops first\n"
          "  (probs,) = inf.run_predictor(predictor, [images_nchw_float32])\n"
          f"or: python tools/infer.py --model-dir {out_dir} --input IMAGE_OR_FOLDER")
    return paths


def export_onnx(cfg: dict, args: argparse.Namespace, out_dir: str) -> dict:
    from paddle_dcn.engine import onnx_deploy

    result = onnx_deploy.export(cfg, args.weights, out_dir, opset=args.opset)
    print(f"exported {cfg['_name_']} to {result['onnx']} (ONNX opset {args.opset}, checked, "
          "verified against Paddle in onnxruntime)")
    print(f"  infer_cfg: {result['infer_cfg']}  (preprocessing and class names)")
    feed = "images_nchw_float32" if cfg.get("task") != "detection" else "image_nchw_float32"
    print("run it with onnxruntime:\n"
          "  import onnxruntime as ort\n"
          f"  session = ort.InferenceSession('{result['onnx']}', providers=['CPUExecutionProvider'])\n"
          f"  outputs = session.run(None, {{'image': {feed}}})  # {', '.join(result['outputs'][:4])}"
          + (", ..." if len(result["outputs"]) > 4 else ""))
    if result.get("not_exported"):
        from paddle_dcn.onnx_export import why_unsupported

        print("not in the ONNX file: the proposal and RoI stages after the RPN head; their ops, by reason:")
        by_reason = {}
        for op, layer in result["not_exported"]:
            ops = by_reason.setdefault(why_unsupported(op), {})
            ops.setdefault(op, []).append(layer)
        for reason, ops in by_reason.items():
            print(f"  {reason}:")
            for op, layers in ops.items():
                print(f"    {op} in {', '.join(dict.fromkeys(layers))}")
    return result


if __name__ == "__main__":
    main()
