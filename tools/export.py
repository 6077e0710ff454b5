#!/usr/bin/env python
"""Export trained weights as a Paddle Inference model with paddle_dcn's custom ops.

    python tools/export.py -c configs/dcn_r50.yml -w output/dcn_r50/best [--output output_inference]

Writes output_inference/<config name>/{model.json, model.pdiparams, infer_cfg.yml}.
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
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    out_dir = os.path.join(args.output, cfg["_name_"])
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


if __name__ == "__main__":
    main()
