"""DCN v2 at the 3x3 stage shapes of the shipped dcn_r50 and of an ImageNet ResNet-50, against
Paddle's Conv2D; and the shipped models' training images/s (run by tools/benchmark_ops.py
``--stages``).

Per shape, one process, candidates interleaved (``bench_common.interleaved_medians``), all
forward+backward of the output's sum:
  * layer: ``paddle_dcn.DeformConv2D`` (v2, 3x3, padding 1, its offset/mask conv included),
    with a randomly initialised offset branch so that the offsets are not zero;
  * op: ``paddle_dcn.ops.deform_conv2d`` alone, on random offsets (std 2 px) and mask;
  * conv: ``paddle.nn.Conv2D`` of the same shape;
  * torchvision (when ``torch``/``torchvision`` are importable, never a dependency):
    ``torchvision.ops.deform_conv2d`` on the same arrays, one thread.
Model rows: a training step (forward, backward, AdamW step) of ``configs/r50.yml`` and
``configs/dcn_r50.yml`` at their batch of 32 on 48 px images, images/s.
"""
from __future__ import annotations

import os
import sys
from typing import Callable, Dict, List

import numpy as np
import paddle

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import interleaved_medians  # noqa: E402
from paddle_dcn import DeformConv2D  # noqa: E402
from paddle_dcn.ops import deform_conv2d  # noqa: E402

# (label, N, C, H=W, stride): the 3x3 convs of dcn_r50's deformable stages at 48 px input
# (res2: 16 channels at 24 px; res3: its stride-2 first block, then 12 px), and the four
# stages of an ImageNet ResNet-50 at batch 8.
STAGE_SHAPES = [
    ("dcn_r50 res2", 32, 16, 24, 1),
    ("dcn_r50 res3.0 (stride 2)", 32, 32, 24, 2),
    ("dcn_r50 res3", 32, 32, 12, 1),
    ("ResNet-50 conv2_x", 8, 64, 56, 1),
    ("ResNet-50 conv3_x", 8, 128, 28, 1),
    ("ResNet-50 conv4_x", 8, 256, 14, 1),
    ("ResNet-50 conv5_x", 8, 512, 7, 1),
]


def _torchvision_candidate(x, offset, mask, weight, stride):
    try:
        import torch
        import torchvision
    except ImportError:
        return None
    torch.set_num_threads(1)
    t = {k: torch.tensor(v.numpy(), requires_grad=True)
         for k, v in dict(x=x, offset=offset, mask=mask, weight=weight).items()}

    def run() -> None:
        out = torchvision.ops.deform_conv2d(t["x"], t["offset"], t["weight"], stride=stride,
                                            padding=1, mask=t["mask"])
        out.sum().backward()
        for v in t.values():
            v.grad = None
    return run


def stage_case(label: str, n: int, c: int, hw: int, stride: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)

    def tensor(*shape, scale=1.0, low=None):
        data = rng.uniform(0, 1, shape) if low is not None else rng.standard_normal(shape) * scale
        out = paddle.to_tensor(data.astype("float32"))
        out.stop_gradient = False
        return out
    ho = (hw + 2 - 3) // stride + 1
    x = tensor(n, c, hw, hw)
    offset, mask = tensor(n, 18, ho, ho, scale=2.0), tensor(n, 9, ho, ho, low=0)
    weight = tensor(c, c, 3, 3, scale=0.05)
    layer = DeformConv2D(c, c, 3, stride=stride, padding=1, modulated=True)
    with paddle.no_grad():  # offsets of a trained layer are not zero
        w = layer.conv_offset.weight
        w.set_value(paddle.to_tensor(rng.standard_normal(w.shape).astype("float32") * 0.05))
    conv = paddle.nn.Conv2D(c, c, 3, stride=stride, padding=1)

    def fwd_bwd(fn: Callable[[], paddle.Tensor], leaves: List[paddle.Tensor]) -> Callable[[], None]:
        def run() -> None:
            fn().sum().backward()
            for t in leaves:
                t.clear_gradient()
        return run
    candidates: Dict[str, Callable[[], None]] = {
        "layer": fwd_bwd(lambda: layer(x), [x] + list(layer.parameters())),
        "op": fwd_bwd(lambda: deform_conv2d(x, offset, weight, stride=stride, padding=1,
                                            mask=mask), [x, offset, mask, weight]),
        "conv": fwd_bwd(lambda: conv(x), [x] + list(conv.parameters())),
    }
    tv = _torchvision_candidate(x, offset, mask, weight, stride)
    if tv is not None:
        candidates["torchvision"] = tv
    m = interleaved_medians(candidates, repeats)
    return dict(label=label, shape=f"{n}x{c}x{hw}x{hw}" + (f" /{stride}" if stride > 1 else ""),
                layer_ms=m["layer"], op_ms=m["op"], conv_ms=m["conv"],
                torchvision_ms=m.get("torchvision"),
                layer_vs_conv=m["layer"] / m["conv"], op_vs_conv=m["op"] / m["conv"])


def stage_table(rows: List[dict]) -> str:
    lines = ["| stage | shape (NxCxHxW) | DeformConv2D layer ms | op ms | Conv2D ms | layer / Conv2D "
             "| op / Conv2D | torchvision op ms |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        tv = f"{r['torchvision_ms']:.1f}" if r["torchvision_ms"] is not None else "-"
        lines.append(f"| {r['label']} | {r['shape']} | {r['layer_ms']:.1f} | {r['op_ms']:.1f} | "
                     f"{r['conv_ms']:.1f} | {r['layer_vs_conv']:.2f}x | {r['op_vs_conv']:.2f}x | {tv} |")
    return "\n".join(lines)


def model_rows(repeats: int, configs=("configs/r50.yml", "configs/dcn_r50.yml")) -> List[dict]:
    """Training images/s of the shipped classification models (one step: forward, backward,
    AdamW step, on a fixed random batch of the config's batch size and image size)."""
    from paddle_dcn.config import load_config
    from paddle_dcn.registry import MODELS, build
    import paddle_dcn.models  # noqa: F401  (registers the models)

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    steps, batch_sizes = {}, {}
    for path in configs:
        cfg = load_config(os.path.join(root, path))
        paddle.seed(0)
        model = build(MODELS, cfg["model"])
        model.train()
        optimizer = paddle.optimizer.AdamW(learning_rate=2e-3, parameters=model.parameters(),
                                           weight_decay=0.05)  # the configs' optimizer
        bs = int(cfg["loader"]["batch_size"])
        size = int(cfg["export"]["image_shape"][-1])
        rng = np.random.default_rng(0)
        batch = {"image": paddle.to_tensor(rng.standard_normal((bs, 3, size, size)).astype("float32")),
                 "label": paddle.to_tensor(rng.integers(0, int(cfg["model"]["num_classes"]), (bs, 1)))}

        def step(model=model, optimizer=optimizer, batch=batch) -> None:
            out = model(batch)
            loss = out["loss"] if isinstance(out, dict) else out
            loss.backward()
            optimizer.step()
            optimizer.clear_grad()
        name = os.path.splitext(os.path.basename(path))[0]
        steps[name], batch_sizes[name] = step, bs
    medians = interleaved_medians(steps, repeats)
    return [dict(model=name, step_ms=ms, images_per_s=batch_sizes[name] * 1e3 / ms)
            for name, ms in medians.items()]


def model_table(rows: List[dict]) -> str:
    base = rows[0]["images_per_s"]
    lines = [f"| model | training step ms (batch 32, 48 px) | images/s | vs {rows[0]['model']} |",
             "|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['step_ms']:.1f} | {r['images_per_s']:.0f} | "
                     f"{r['images_per_s'] / base:.2f}x |")
    return "\n".join(lines)


def run(repeats: int) -> str:
    rows = [stage_case(*shape, repeats) for shape in STAGE_SHAPES]
    return "\n".join([stage_table(rows), "", model_table(model_rows(repeats))])
