"""Pictures of where deformable convolutions sample (as in the DCN papers' figures).

:func:`visualize_offsets` runs a model (or a single deformable layer) on one input, and for each
deformable layer that predicts its offsets (DeformConv2D, DCNv3, DCNv4; ``engine.offsets``)
draws, over the input image, the sampling locations of chosen output pixels: red dots for the
kh*kw (x deformable groups) samples, their size and opacity following the modulation mask of a
DeformConv2D v2 (DCNv3/DCNv4 dots are drawn alike: their aggregation weights are not a [0, 1]
mask), a green cross at the output pixel's own position. It returns
HWC uint8 numpy images (what VisualDL's ``add_image`` takes by default);
``tools/visualize_offsets.py`` is the command line around it.

Coordinates: a feature-map pixel u of a map of size S over an image of size H lies at image
coordinate ``(u + 0.5) * H / S - 0.5`` (pixel centres aligned); points are given as image
``(y, x)`` and each goes to its nearest output pixel of every layer. For a deep layer this shows
where that layer samples its own input, placed on the image by this rescaling; it does not
compose the sampling of the layers before it.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import numpy as np
import paddle
from PIL import Image, ImageDraw

from .layers._offset_reader import offset_reader
from .layers.deform_conv import DeformConv2D

Point = Sequence[float]


def sampling_locations(
    layer: paddle.nn.Layer,
    offset: np.ndarray,
    mask: Optional[np.ndarray],
    out_points: Sequence[Sequence[int]],
) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Where ``layer`` samples its input for the given output pixels of one image.

    Args:
        layer: a deformable layer (DeformConv2D, DCNv3, DCNv4): gives kernel size, stride,
            padding and dilation.
        offset: ``[2P, H_out, W_out]`` (P = offset groups * kh * kw, group-major, kernel
            points row-major), ``(dy, dx)`` per point: DeformConv2D's op layout, displacements
            from the plain conv's grid.
        mask: ``[P, H_out, W_out]`` or None.
        out_points: output pixels ``(i, j)``.

    Returns:
        locations ``[len(out_points), P, 2]`` as (y, x) in the layer's input pixels, and the
        mask values ``[len(out_points), P]`` (None without a mask).
    """
    kh, kw = layer.kernel_size
    sh, sw = layer.stride
    ph, pw = layer.padding
    dh, dw = layer.dilation
    groups = offset.shape[0] // (2 * kh * kw)
    a, b = np.meshgrid(np.arange(kh), np.arange(kw), indexing="ij")
    base_y = np.tile((a * dh).reshape(-1), groups)  # [P], row-major kernel points per group
    base_x = np.tile((b * dw).reshape(-1), groups)
    locations, weights = [], []
    for i, j in out_points:
        dy = offset[0::2, i, j]
        dx = offset[1::2, i, j]
        y = i * sh - ph + base_y + dy
        x = j * sw - pw + base_x + dx
        locations.append(np.stack([y, x], axis=-1))
        if mask is not None:
            weights.append(mask[:, i, j])
    return np.asarray(locations, dtype=np.float64), (
        np.asarray(weights, dtype=np.float64) if mask is not None else None
    )


def to_display_image(x: np.ndarray) -> np.ndarray:
    """A ``[C, H, W]`` float array as an HWC uint8 image: 3 channels as RGB, otherwise the
    channel mean as grey, min-max scaled to 0..255."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"x must be [C, H, W], got shape {list(x.shape)}")
    img = x if x.shape[0] == 3 else np.repeat(x.mean(axis=0, keepdims=True), 3, axis=0)
    low, high = img.min(), img.max()
    img = (img - low) / (high - low) if high > low else np.zeros_like(img)
    return np.ascontiguousarray((img.transpose(1, 2, 0) * 255).round().astype(np.uint8))


def draw_sampling_locations(
    image: np.ndarray,
    locations: np.ndarray,
    centres: np.ndarray,
    weights: Optional[np.ndarray] = None,
    min_size: int = 256,
) -> np.ndarray:
    """Draws sampling points over ``image`` (HWC uint8); returns a new HWC uint8 image.

    ``locations`` ``[M, P, 2]`` and ``centres`` ``[M, 2]`` are (y, x) in ``image`` pixels;
    ``weights`` ``[M, P]`` in [0, 1] (or None) sets each dot's size and opacity. The image is
    enlarged by an integer factor (nearest neighbour) so that its longer side is at least
    ``min_size``.
    """
    height, width = image.shape[:2]
    factor = max(1, math.ceil(min_size / max(height, width)))
    canvas = Image.fromarray(np.ascontiguousarray(image[..., :3])).convert("RGB")
    canvas = canvas.resize((width * factor, height * factor), Image.NEAREST).convert("RGBA")
    overlay = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)

    def scaled(v: float) -> float:
        return (v + 0.5) * factor - 0.5

    radius = max(2.0, factor * 0.35)
    for m in range(len(locations)):
        for p in range(locations.shape[1]):
            y, x = locations[m, p]
            if not (np.isfinite(y) and np.isfinite(x)):
                continue
            w = 1.0 if weights is None else float(np.clip(weights[m, p], 0.0, 1.0))
            r = radius * (0.5 + 0.5 * w)
            cy, cx = scaled(y), scaled(x)
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(255, 40, 40, int(90 + 165 * w)))
        cy, cx = scaled(centres[m][0]), scaled(centres[m][1])
        arm = radius * 1.5
        draw.line([cx - arm, cy, cx + arm, cy], fill=(40, 255, 40, 255), width=2)
        draw.line([cx, cy - arm, cx, cy + arm], fill=(40, 255, 40, 255), width=2)
    out = Image.alpha_composite(canvas, overlay).convert("RGB")
    return np.asarray(out, dtype=np.uint8)


def _default_points(height: int, width: int) -> list[tuple[float, float]]:
    """Three points on the image's horizontal centre line (left, middle, right)."""
    y = (height - 1) / 2
    return [(y, (width - 1) * f) for f in (0.25, 0.5, 0.75)]


def visualize_offsets(
    model: paddle.nn.Layer,
    x: paddle.Tensor,
    points: Optional[Sequence[Point]] = None,
    image: Optional[np.ndarray] = None,
    layer_names: Optional[Sequence[str]] = None,
    batch_index: int = 0,
    min_size: int = 256,
) -> Dict[str, np.ndarray]:
    """Runs ``model(x)`` once and draws, for each deformable layer in it, its sampling locations.

    Args:
        model: a deformable layer or any Layer containing some (DeformConv2D; DCNv3, DCNv4).
        x: the model's input ``[N, C, H, W]`` (or ``[C, H, W]``).
        points: image pixels ``(y, x)`` whose nearest output pixel of each layer is shown
            (default: three points across the middle row).
        image: HWC uint8 picture of ``x[batch_index]`` to draw on, ``H x W`` like x
            (default: ``x[batch_index]`` min-max scaled, see :func:`to_display_image`).
        layer_names: the sublayer names to draw (``named_sublayers`` names; ``""`` is
            ``model`` itself); default every deformable layer.
        batch_index: which image of the batch.
        min_size: see :func:`draw_sampling_locations`.

    Returns:
        ``{layer name: HWC uint8 image}`` in the order the layers ran.
    """
    if len(x.shape) == 3:
        x = x.unsqueeze(0)
    if len(x.shape) != 4:
        raise ValueError(f"x must be [N, C, H, W] or [C, H, W], got shape {list(x.shape)}")
    height, width = x.shape[2], x.shape[3]
    if image is None:
        image = to_display_image(x[batch_index].astype("float32").numpy())
    elif tuple(image.shape[:2]) != (height, width):
        raise ValueError(
            f"image must be HWC with H, W = {height}, {width} (the size of x), got {list(image.shape)}"
        )
    points = list(points) if points is not None else _default_points(height, width)

    chosen = {
        name: layer for name, layer in model.named_sublayers(include_self=True)
        if (isinstance(layer, DeformConv2D) or offset_reader(layer) is not None)
        and (layer_names is None or name in layer_names)
    }
    if not chosen:
        raise ValueError(
            "model has no deformable layer (DeformConv2D, DCNv3, DCNv4)"
            + (f" named {list(layer_names)}" if layer_names else "")
        )
    captured: Dict[str, tuple] = {}
    input_hw: Dict[str, list] = {}

    def aggregate_hooks(name: str, layer: paddle.nn.Layer) -> list:
        """DCNv3/DCNv4: the input size before the layer runs, the offsets from its predictor."""
        predictor, read = offset_reader(layer)

        def before(_layer, inputs):
            shape = list(inputs[0].shape)
            input_hw[name] = shape[1:3] if getattr(layer, "data_format", "NCHW") == "NHWC" else shape[2:]

        def after(_layer, _inputs, output):
            off = read(output)[batch_index]  # [P, 2, H, W]
            captured[name] = (input_hw[name], off.reshape(-1, *off.shape[2:]), None)
        return [layer.register_forward_pre_hook(before), predictor.register_forward_post_hook(after)]

    def hook_for(name: str):
        def hook(layer, inputs, kwargs):
            given = dict(zip(("x", "offset", "mask"), inputs))
            given.update(kwargs)
            feat = given["x"]
            offset, mask = given.get("offset"), given.get("mask")
            if offset is None:  # the layer predicts its own offsets
                offset, mask = layer.predict_offsets(feat)
            captured[name] = (
                list(feat.shape[2:]),
                offset[batch_index].astype("float32").numpy(),
                None if mask is None else mask[batch_index].astype("float32").numpy(),
            )
        return hook

    handles = []
    for name, layer in chosen.items():
        if isinstance(layer, DeformConv2D):
            handles.append(layer.register_forward_pre_hook(hook_for(name), with_kwargs=True))
        else:
            handles.extend(aggregate_hooks(name, layer))
    was_training = model.training
    model.eval()
    try:
        with paddle.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        if was_training:
            model.train()

    pictures: Dict[str, np.ndarray] = {}
    for name, (in_hw, offset, mask) in captured.items():
        layer = chosen[name]
        out_h, out_w = offset.shape[1:]
        out_points = [
            (
                int(np.clip(round((py + 0.5) * out_h / height - 0.5), 0, out_h - 1)),
                int(np.clip(round((px + 0.5) * out_w / width - 0.5), 0, out_w - 1)),
            )
            for py, px in points
        ]
        locations, weights = sampling_locations(layer, offset, mask, out_points)
        # layer-input pixels -> image pixels; output pixels -> image pixels
        scale_in = np.array([height / in_hw[0], width / in_hw[1]])
        locations = (locations + 0.5) * scale_in - 0.5
        centres = (np.asarray(out_points, dtype=np.float64) + 0.5) * np.array(
            [height / out_h, width / out_w]
        ) - 0.5
        if weights is not None and getattr(layer, "mask_init", 0.5) != 0.5:
            weights = weights / (2.0 * layer.mask_init)  # back to [0, 1]
        pictures[name] = draw_sampling_locations(image, locations, centres, weights, min_size)
    return pictures
