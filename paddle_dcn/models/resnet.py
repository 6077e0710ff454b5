"""ResNet 18/34/50/101 with deformable stages (``dcn_stages``), CoordConv and small-image stems.

Stages are numbered as in the ResNet and DCN papers: 2..5 are conv2_x..conv5_x (strides 4,
8, 16, 32 with the standard stem), held as sublayers ``res2``..``res5``. ``dcn_stages=[3, 4, 5]`` replaces every 3x3 conv of
those stages by a deformable conv (DCN v2, modulated, unless ``dcn['modulated']`` is False):
the DCNv2 paper's setting.

Stems: ``'imagenet'`` is the 7x7/2 conv + 3x3/2 max pool; ``'small'`` is one 3x3 conv of
stride ``stem_stride`` (1 or 2) and no pool, for 32-64 px images. ``coord_conv=True`` adds
x/y coordinate channels to the image before the first conv (CoordConv).

``base_channels`` is the width of stage 2 (64 in the papers; every stage doubles it, the
bottleneck expands by 4), a knob for CPU-sized runs.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import paddle
from paddle import nn

from ..layers import DCNv3, DCNv4, AddCoords, DeformConv2D
from ..registry import BACKBONES, accepted_keys, check_keys

SPECS = {18: ("basic", [2, 2, 2, 2]), 34: ("basic", [3, 4, 6, 3]),
         50: ("bottleneck", [3, 4, 6, 3]), 101: ("bottleneck", [3, 4, 23, 3])}
# dcn: the options of the deformable 3x3 convs, passed whole to the layer (``type``:
# DeformConv2D by default, or DCNv3 / DCNv4, the modern operators, channels in == channels
# out, so in bottlenecks only). The ResNet sets the conv's geometry; the rest is the config's.
AGGREGATE_OPS = {"DCNv3": DCNv3, "DCNv4": DCNv4}
DCN_TYPES = {"DeformConv2D": DeformConv2D, **AGGREGATE_OPS}
FIXED_BY_RESNET = {
    "DeformConv2D": ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups",
                     "weight_attr", "bias_attr", "offset_branch", "data_format"),
    "DCNv3": ("channels", "kernel_size", "stride", "padding", "dilation", "data_format"),
    "DCNv4": ("channels", "kernel_size", "stride", "padding", "dilation", "data_format"),
}


def _dcn_options(dcn: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """The checked ``dcn`` dict: ``type`` (default DeformConv2D) plus keyword arguments of that
    layer, every one it takes except those the ResNet sets (``FIXED_BY_RESNET``); an unknown
    key is an UnknownKeyError naming it and the valid ones (``registry.check_keys``)."""
    dcn = dict(dcn or {})
    kind = dcn.pop("type", "DeformConv2D")
    if kind not in DCN_TYPES:
        raise ValueError(f"dcn.type must be {', '.join(DCN_TYPES)}, got {kind!r}")
    valid = [k for k in accepted_keys(DCN_TYPES[kind]) if k not in FIXED_BY_RESNET[kind]]
    check_keys(f"dcn ({kind})", dcn, valid)
    return {"type": kind, **dcn}


def _zero_gamma() -> paddle.ParamAttr:
    """The last BN of each residual branch starts at zero scale, so every block starts as the
    identity ("zero-init residual", Goyal et al. 2017): stable from-scratch training."""
    return paddle.ParamAttr(initializer=nn.initializer.Constant(0.0))


def conv3x3(cin: int, cout: int, stride: int, dcn: Optional[Dict[str, Any]]) -> nn.Layer:
    """A 3x3 conv (no bias), deformable when ``dcn`` is a validated dict (``_dcn_options``)."""
    if dcn is None:
        return nn.Conv2D(cin, cout, 3, stride=stride, padding=1, bias_attr=False)
    opts = {k: v for k, v in dcn.items() if k != "type"}
    if dcn["type"] in AGGREGATE_OPS:
        if cin != cout:
            raise ValueError(f"dcn.type {dcn['type']} keeps the channel count; this 3x3 conv maps {cin} to {cout} "
                             "channels (use a bottleneck depth, 50 or 101)")
        return AGGREGATE_OPS[dcn["type"]](cin, kernel_size=3, stride=stride, **opts)
    return DeformConv2D(cin, cout, 3, stride=stride, padding=1, bias_attr=False, **opts)


class BasicBlock(nn.Layer):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int, dcn: Optional[Dict[str, Any]]) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = conv3x3(cin, width, stride, dcn)
        self.bn1 = nn.BatchNorm2D(width)
        self.conv2 = conv3x3(width, cout, 1, dcn)
        self.bn2 = nn.BatchNorm2D(cout, weight_attr=_zero_gamma())
        self.relu = nn.ReLU()
        self.shortcut = _shortcut(cin, cout, stride)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + self.shortcut(x))


class Bottleneck(nn.Layer):
    """1x1 -> 3x3 (stride here, deformable in DCN stages) -> 1x1, expansion 4."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int, dcn: Optional[Dict[str, Any]]) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2D(cin, width, 1, bias_attr=False)
        self.bn1 = nn.BatchNorm2D(width)
        self.conv2 = conv3x3(width, width, stride, dcn)
        self.bn2 = nn.BatchNorm2D(width)
        self.conv3 = nn.Conv2D(width, cout, 1, bias_attr=False)
        self.bn3 = nn.BatchNorm2D(cout, weight_attr=_zero_gamma())
        self.relu = nn.ReLU()
        self.shortcut = _shortcut(cin, cout, stride)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + self.shortcut(x))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Layer:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2D(cin, cout, 1, stride=stride, bias_attr=False), nn.BatchNorm2D(cout))


@BACKBONES.register()
class ResNet(nn.Layer):
    """ResNet backbone; ``forward(x [N, 3, H, W])`` -> list of the stage outputs in ``out_stages``.

    Args:
        depth: 18, 34, 50 or 101.
        dcn_stages: stages (2..5) whose 3x3 convs are deformable; [] for none.
        dcn: the deformable convs' layer and its options, passed whole: ``type``
            (DeformConv2D, the default, or DCNv3 / DCNv4: the InternImage operators,
            bottleneck depths only as channels in == out) and any keyword of that layer
            except the geometry the ResNet sets (``FIXED_BY_RESNET``): for DeformConv2D
            ``modulated``, ``deformable_groups``, ``offset_lr_mult``, ``mask_init``,
            ``offset_bound``, ``offset_bound_fn``, ``deformable_groups_over``, ...; for
            DCNv3/v4 ``groups``, ``offset_scale``, ``offset_lr_mult``, ``dw_kernel_size``,
            DCNv4's ``mask_init``, ... Unknown keys are errors listing the valid ones.
        stem: 'imagenet' (7x7/2 + max pool) or 'small' (3x3 of ``stem_stride``, no pool).
        stem_stride: 1 or 2, for the small stem.
        coord_conv: add coordinate channels before the stem conv.
        base_channels: width of stage 2 (64 in the papers).
        out_stages: which stage outputs ``forward`` returns (default [5]).
        in_channels: image channels.

    Attributes: ``out_channels`` and ``out_strides`` (channels and stride in input pixels of
    each returned stage, in order: stages 2..5 are strides 4..32 with the imagenet stem,
    ``stem_stride * (1, 2, 4, 8)`` with the small one).
    """

    def __init__(self, depth: int = 50, dcn_stages: Sequence[int] = (), dcn: Optional[Dict[str, Any]] = None,
                 stem: str = "imagenet", stem_stride: int = 1, coord_conv: bool = False,
                 base_channels: int = 64, out_stages: Sequence[int] = (5,), in_channels: int = 3) -> None:
        super().__init__()
        if depth not in SPECS:
            raise ValueError(f"depth must be one of {sorted(SPECS)}, got {depth!r}")
        bad = [s for s in list(dcn_stages) + list(out_stages) if s not in (2, 3, 4, 5)]
        if bad:
            raise ValueError(f"dcn_stages and out_stages take stage numbers 2..5 (conv2_x..conv5_x), got {bad}")
        if stem not in ("imagenet", "small"):
            raise ValueError(f"stem must be 'imagenet' or 'small', got {stem!r}")
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride!r}")
        dcn_opts = _dcn_options(dcn)
        self.depth, self.dcn_stages, self.out_stages = depth, sorted(dcn_stages), list(out_stages)
        kind, counts = SPECS[depth]
        block = Bottleneck if kind == "bottleneck" else BasicBlock

        self.add_coords = AddCoords() if coord_conv else None
        cin = in_channels + (2 if coord_conv else 0)
        if stem == "imagenet":
            self.stem = nn.Sequential(
                nn.Conv2D(cin, base_channels, 7, stride=2, padding=3, bias_attr=False),
                nn.BatchNorm2D(base_channels), nn.ReLU(), nn.MaxPool2D(3, stride=2, padding=1))
        else:
            self.stem = nn.Sequential(
                nn.Conv2D(cin, base_channels, 3, stride=stem_stride, padding=1, bias_attr=False),
                nn.BatchNorm2D(base_channels), nn.ReLU())
        channels = base_channels
        stem_total = 4 if stem == "imagenet" else stem_stride
        self.stage_names: List[str] = []  # sublayers res2..res5 (PaddleDetection's names)
        self.out_channels: List[int] = []
        self.out_strides: List[int] = []
        for i, n in enumerate(counts):
            stage_no = i + 2
            width = base_channels * 2 ** i
            opts = dcn_opts if stage_no in self.dcn_stages else None
            blocks = []
            for j in range(n):
                blocks.append(block(channels, width, 2 if (j == 0 and i > 0) else 1, opts))
                channels = width * block.expansion
            self.add_sublayer(f"res{stage_no}", nn.Sequential(*blocks))
            self.stage_names.append(f"res{stage_no}")
            if stage_no in self.out_stages:
                self.out_channels.append(channels)
                self.out_strides.append(stem_total * 2 ** i)

    def forward(self, x: paddle.Tensor) -> List[paddle.Tensor]:
        if self.add_coords is not None:
            x = self.add_coords(x)
        x = self.stem(x)
        outs = []
        for i, name in enumerate(self.stage_names):
            x = getattr(self, name)(x)
            if i + 2 in self.out_stages:
                outs.append(x)
        return outs
