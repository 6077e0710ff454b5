#!/usr/bin/env python
"""Training-step speed of the detection configs on the built-in data (to size a schedule).

    python tools/benchmark_detection.py [-c configs/faster_rcnn_r50_fpn.yml configs/dcn_...yml]
                                        [--iters 10] [-o key=value ...]

For each config: builds the model and the first ``iters`` training batches of its train set,
runs one warm-up step, then times ``iters`` steps (forward, backward, SGD) and prints seconds
per iteration, images per second and the time an epoch and the config's whole schedule would
take at that speed (evaluation not included). Configs run interleaved, one step each in turn,
so that machine noise hits them alike. On a shared CPU, set ``OMP_WAIT_POLICY=passive``.
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from paddle_dcn.runtime import prefer_fast_mkl_path  # noqa: E402

prefer_fast_mkl_path()  # as tools/train.py does, so the step times match training

import paddle  # noqa: E402

import paddle_dcn.engine  # noqa: E402,F401 - registration
from paddle_dcn.config import load_config  # noqa: E402
from paddle_dcn.engine.trainer import seed_everything  # noqa: E402
from paddle_dcn.registry import DATASETS, MODELS, build  # noqa: E402

DEFAULT = ["configs/faster_rcnn_r50_fpn.yml", "configs/dcn_faster_rcnn_r50_fpn.yml", "configs/dcn_rfcn_r50.yml"]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--configs", nargs="+", default=DEFAULT)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("-o", "--opt", nargs="+", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    runs = []
    for path in args.configs:
        cfg = load_config(path, args.opt)
        seed_everything(int(cfg["seed"]))
        bs = int(cfg["loader"]["batch_size"])
        dataset = build(DATASETS, cfg["train_dataset"])
        batches = [{k: paddle.to_tensor(v) for k, v in
                    dataset.collate_fn([dataset[(j * bs + i) % len(dataset)] for i in range(bs)]).items()}
                   for j in range(args.iters + 1)]
        model = build(MODELS, cfg["model"])
        model.train()
        opt = paddle.optimizer.Momentum(0.001, momentum=0.9, parameters=model.parameters())
        runs.append({"name": cfg["_name_"], "model": model, "opt": opt, "batches": batches, "times": [], "bs": bs,
                     "iters_per_epoch": len(dataset) // bs, "epochs": int(cfg["epochs"])})

    def step(run, batch):
        loss = run["model"](batch)["loss"]
        loss.backward()
        run["opt"].step()
        run["opt"].clear_grad()

    for run in runs:
        step(run, run["batches"][0])  # warm-up
    for it in range(1, args.iters + 1):
        for run in runs:
            t = time.perf_counter()
            step(run, run["batches"][it])
            run["times"].append(time.perf_counter() - t)
    out = {}
    print(f"{'config':<28} {'s/iter':>7} {'img/s':>6} {'epoch':>9} {'schedule':>9}   "
          f"(batch, median of {args.iters} steps; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')})")
    for run in runs:
        s = statistics.median(run["times"])
        epoch = s * run["iters_per_epoch"]
        print(f"{run['name']:<28} {s:7.3f} {run['bs'] / s:6.2f} {str(datetime.timedelta(seconds=int(epoch))):>9} "
              f"{str(datetime.timedelta(seconds=int(epoch * run['epochs']))):>9}   (batch {run['bs']})")
        out[run["name"]] = s
    return out


if __name__ == "__main__":
    main()
