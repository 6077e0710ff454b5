#!/usr/bin/env python
"""Classify images (top-k classes with names and probabilities), or detect objects
(``task: detection``: boxes, labels and scores drawn into --output-dir and its VisualDL log).

    python tools/infer.py -c configs/dcn_r50.yml -w output/dcn_r50/best --input img.png|folder
    python tools/infer.py --model-dir output_inference/dcn_r50 --input img.png|folder   # exported

Classification inputs follow one rule (docs/training.md, "Input size"): the model takes
``export.image_shape``, which must be what the eval set's samples are after the eval transforms
(checked first: a mismatch is an error naming both sizes). An image goes through the eval
transforms; one that they do not bring to that size is resized to it first, with a warning.
Detection: when no box reaches --threshold, the best few scores are printed instead.

Broken inputs: a missing or undecodable image stops infer with one line naming the file (exit
status 2, no traceback); ``--bad-images skip`` (default: the config's
``eval_dataset.bad_images``, else ``raise``) skips such files, says why for each, and counts them
at the end. ``--input`` takes several files and folders.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from paddle_dcn.runtime import prefer_fast_mkl_path  # noqa: E402

prefer_fast_mkl_path()  # before the first MKL call: see paddle_dcn/runtime.py

import numpy as np  # noqa: E402
import paddle  # noqa: E402

from paddle_dcn.config import load_config  # noqa: E402
from paddle_dcn.data.folder import IMAGE_EXTENSIONS, BadImageError, load_rgb  # noqa: E402
from paddle_dcn.engine import deploy  # noqa: E402


def list_images(path: str) -> list:
    """The images of folder ``path`` (sorted), or ``[path]`` for a file (a missing one is
    checked when it is read)."""
    if os.path.isdir(path):
        files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTENSIONS))
        if not files:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {path}")
        return files
    return [path]


class ImageReader:
    """``reader(path)`` -> uint8 HWC RGB image; a missing or undecodable file raises
    BadImageError naming it (``policy 'raise'``) or is skipped: None, a line saying why, and
    counted in ``skipped`` (``'skip'``)."""

    def __init__(self, policy: str) -> None:
        if policy not in ("raise", "skip"):
            raise ValueError(f"bad_images must be 'raise' or 'skip', got {policy!r}")
        self.policy, self.skipped = policy, []

    def __call__(self, path: str):
        try:
            return load_rgb(path)
        except BadImageError as error:
            if self.policy != "skip":
                raise BadImageError(f"{error} (--bad-images skip skips such files)") from None
            self.skipped.append(path)
            print(f"skipped: {error}", file=sys.stderr)
            return None

    def summary(self) -> None:
        if self.skipped:
            print(f"skipped {len(self.skipped)} unreadable image(s) (--bad-images skip): "
                  + ", ".join(self.skipped[:10]) + (" ..." if len(self.skipped) > 10 else ""))


def _detection_runner(args):
    """A detector for ``task: detection`` configs / exported detectors, else None."""
    from paddle_dcn.engine import det_deploy

    if args.model_dir:
        task = deploy.read_infer_cfg(args.model_dir).get("task")
        return det_deploy.InferenceDetector(args.model_dir) if task == "detection" else None
    cfg = load_config(args.config, args.opt)
    return det_deploy.DygraphDetector(cfg, args.weights) if cfg.get("task") == "detection" else None


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", help="YAML config (with -w)")
    parser.add_argument("-o", "--opt", nargs="+", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("-w", "--weights", help="checkpoint (with -c)")
    parser.add_argument("--model-dir", help="exported model directory (instead of -c/-w)")
    parser.add_argument("--input", required=True, nargs="+", help="image files and/or folders of images")
    parser.add_argument("--bad-images", choices=("raise", "skip"), default=None,
                        help="a missing or unreadable image: stop naming it (raise) or skip and count it "
                             "(default: the config's eval_dataset.bad_images, else raise)")
    parser.add_argument("--topk", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threshold", type=float, default=0.5, help="detection: lowest score drawn")
    parser.add_argument("--output-dir", default="output/infer", help="detection: where drawn images go (+ vdl/)")
    args = parser.parse_args(argv)
    if bool(args.model_dir) == bool(args.config and args.weights):
        parser.error("give either --model-dir, or -c and -w")

    files = [f for path in args.input for f in list_images(path)]
    policy = args.bad_images
    if policy is None:
        cfg = load_config(args.config, args.opt) if args.config else {}
        policy = (cfg.get("eval_dataset") or {}).get("bad_images", "raise")
    reader = ImageReader(policy)
    detection = _detection_runner(args)
    if detection is not None:
        from paddle_dcn.engine.det_deploy import run_infer

        results = run_infer(detection, files, args.output_dir, args.threshold, reader)
        reader.summary()
        return results
    if args.model_dir:
        runner = deploy.InferenceClassifier(args.model_dir)
        names = runner.class_names
        predict = runner.probabilities
    else:
        cfg = load_config(args.config, args.opt)
        dataset = deploy.checked_reference(cfg)  # classes and export.image_shape against the data
        model = deploy.build_model_with_weights(cfg, args.weights)
        names = deploy.class_names_of(cfg, dataset)
        prep = deploy.preprocessor(cfg["export"]["image_shape"], (cfg.get("eval_dataset") or {}).get("transforms", []))

        def predict(images):
            with paddle.no_grad():
                return model.predict(paddle.to_tensor(np.stack([prep(i) for i in images]))).numpy()

    results = []
    for start in range(0, len(files), args.batch_size):
        loaded = [(f, reader(f)) for f in files[start: start + args.batch_size]]
        loaded = [(f, image) for f, image in loaded if image is not None]
        if not loaded:
            continue
        probs = predict([image for _, image in loaded])
        for (f, _), top in zip(loaded, deploy.top_k(probs, names, args.topk)):
            results.append((f, top))
            print(f"{f}: " + ", ".join(f"{n} ({i}) {p:.3f}" for n, i, p in top))
    reader.summary()
    return results


if __name__ == "__main__":
    try:
        main()
    except (BadImageError, FileNotFoundError, deploy.NotAPaddleExport) as error:  # one line, no traceback
        print(f"infer.py: error: {error}", file=sys.stderr)
        sys.exit(2)
