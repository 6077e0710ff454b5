#!/usr/bin/env python
"""Evaluate weights on the config's eval set.

    python tools/eval.py -c configs/dcn_r50.yml -w output/dcn_r50/best [-o ...]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from paddle_dcn.runtime import prefer_fast_mkl_path  # noqa: E402

prefer_fast_mkl_path()  # before the first MKL call: see paddle_dcn/runtime.py

from paddle_dcn.engine import Trainer  # noqa: E402
from paddle_dcn.engine.cli import add_config_args, config_from_args  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("-w", "--weights", required=True,
                        help="checkpoint (prefix, .pdparams file, or output directory)")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    args = parser.parse_args(argv)
    trainer = Trainer(config_from_args(args), mode="eval")
    trainer.load_weights(args.weights)
    metrics = trainer.evaluate()
    if trainer.is_main:
        print(json.dumps(metrics) if args.json else " ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
    return metrics


if __name__ == "__main__":
    main()
