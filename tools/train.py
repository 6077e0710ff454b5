#!/usr/bin/env python
"""Train (and evaluate) a model from a config.

    python tools/train.py -c configs/dcn_r50.yml [-o key.sub=value ...] [-r checkpoint]
                          [-w weights] [--seed N] [--eval-only] [--output DIR]

Multi-process data parallel (CPU gloo or GPUs):
    python -m paddle.distributed.launch --nproc_per_node 2 tools/train.py -c configs/dcn_r50.yml
"""
from __future__ import annotations

import argparse
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
    parser.add_argument("-r", "--resume", default=None,
                        help="checkpoint to resume (prefix, .pdparams file, or output directory)")
    parser.add_argument("-w", "--weights", default=None, help="initial model weights (not resumed state)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (overrides the config's)")
    parser.add_argument("--eval-only", action="store_true", help="only evaluate (use with -w or -r)")
    parser.add_argument("--eval", action="store_true",
                        help="evaluate during training (default: every eval_interval epochs; "
                             "this flag turns it on when eval_interval is 0)")
    parser.add_argument("--output", default=None, help="output directory (default output/<config name>)")
    args = parser.parse_args(argv)

    cfg = config_from_args(args)
    if args.seed is not None:
        cfg["seed"] = args.seed
    if args.output:
        cfg["output_dir"] = args.output
    if args.eval and not cfg.get("eval_interval"):
        cfg["eval_interval"] = 1
    trainer = Trainer(cfg, mode="eval" if args.eval_only else "train")
    if args.eval_only:
        if args.weights or args.resume:
            trainer.load_weights(args.weights or args.resume)
        metrics = trainer.evaluate()
        print(" ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
        return metrics
    if args.weights:
        trainer.load_weights(args.weights)
    if args.resume:
        trainer.resume(args.resume)
    return trainer.train()


if __name__ == "__main__":
    main()
