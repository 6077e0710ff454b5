"""Draw where the deformable layers of a model sample, over an input image, to PNG files.

    # a model built by a Python factory "module:function", with trained weights
    python tools/visualize_offsets.py --model my_pkg.models:build --weights out/model.pdparams \
        --image cat.jpg --size 224 --points 100,60 100,160 --out offsets.png

    # no trained model at hand: one DeformConv2D with random offsets (a quick look at the tool)
    python tools/visualize_offsets.py --demo --out offsets.png

One PNG per deformable layer (DeformConv2D, DCNv3, DCNv4): with one layer exactly --out, with
several --out's stem plus the layer name (``offsets_backbone.layer4.0.conv2.png``). The drawing itself is
``paddle_dcn.visualize.visualize_offsets`` (the training pipeline reuses it for VisualDL).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Optional, Sequence

import numpy as np
import paddle
from PIL import Image

from paddle_dcn import DeformConv2D
from paddle_dcn.weights import load_weights
from paddle_dcn.visualize import visualize_offsets

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def parse_point(text: str) -> tuple[float, float]:
    try:
        y, x = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"a point is 'y,x' in image pixels, got {text!r}") from exc
    return y, x


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="'module:callable' returning the paddle.nn.Layer")
    source.add_argument("--demo", action="store_true", help="one DeformConv2D with random offsets")
    parser.add_argument("--weights", help="a .pdparams state dict for --model")
    parser.add_argument("--image", help="input image (default: a generated test pattern)")
    parser.add_argument("--size", type=int, default=None, help="resize the image to SIZE x SIZE")
    parser.add_argument("--points", type=parse_point, nargs="+", default=None,
                        help="image pixels 'y,x' whose sampling is drawn (default: 3 on the middle row)")
    parser.add_argument("--layers", nargs="+", default=None, help="deformable sublayer names to draw")
    parser.add_argument("--mean", type=float, nargs=3, default=IMAGENET_MEAN)
    parser.add_argument("--std", type=float, nargs=3, default=IMAGENET_STD)
    parser.add_argument("--out", required=True, help="output PNG path")
    return parser


def load_image(path: Optional[str], size: Optional[int]) -> np.ndarray:
    """HWC uint8 RGB; a 64x64 checkerboard with a disc when no path is given."""
    if path is None:
        n = size or 64
        yy, xx = np.mgrid[:n, :n]
        board = (((yy // 8) + (xx // 8)) % 2 * 160 + 40).astype(np.uint8)
        disc = (yy - n / 2) ** 2 + (xx - n / 2) ** 2 < (n / 5) ** 2
        rgb = np.stack([board, board, board], axis=-1)
        rgb[disc] = (230, 180, 40)
        return rgb
    img = Image.open(path).convert("RGB")
    if size:
        img = img.resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def build_model(spec: str, weights: Optional[str]) -> paddle.nn.Layer:
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise SystemExit(f"--model must be 'module:callable', got {spec!r}")
    model = getattr(importlib.import_module(module_name), attr)()
    if weights:
        load_weights(model, paddle.load(weights))
    return model


def demo_model() -> paddle.nn.Layer:
    layer = DeformConv2D(3, 8, 3, padding=2, dilation=2)
    with paddle.no_grad():
        layer.conv_offset.weight.set_value(paddle.randn(layer.conv_offset.weight.shape) * 0.3)
    return layer


def output_paths(out: str, names: Sequence[str]) -> list[str]:
    if len(names) == 1:
        return [out]
    stem, ext = os.path.splitext(out)
    return [f"{stem}_{name or 'model'}{ext or '.png'}" for name in names]


def main(argv: Optional[Sequence[str]] = None) -> list[str]:
    args = build_parser().parse_args(argv)
    image = load_image(args.image, args.size)
    x = (image.astype(np.float32) / 255.0 - np.array(args.mean, np.float32)) / np.array(args.std, np.float32)
    x = paddle.to_tensor(x.transpose(2, 0, 1)[None])
    if args.demo:
        paddle.seed(0)
        model = demo_model()
    else:
        model = build_model(args.model, args.weights)
    pictures = visualize_offsets(model, x, points=args.points, image=image, layer_names=args.layers)
    paths = output_paths(args.out, list(pictures))
    for path, picture in zip(paths, pictures.values()):
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        Image.fromarray(picture).save(path)
        print(f"wrote {path} ({picture.shape[1]}x{picture.shape[0]})")
    return paths


if __name__ == "__main__":
    main(sys.argv[1:])
