"""Graph clean-up after conversion: fold a per-channel bias ``Add`` into the (Deform)Conv
that feeds it, so every deformable conv is one ``DeformConv`` node with its bias."""
from __future__ import annotations

from collections import Counter
from typing import Dict, List, Sequence

import numpy as np

BIAS_INPUT = {"Conv": 2, "DeformConv": 3}


def fuse_conv_bias(nodes: List, initializers: Dict[str, np.ndarray], graph_outputs: Sequence[str]) -> List:
    """Returns the node list with ``Add(conv_out, c)`` removed wherever ``c`` is a constant
    ``[1, C, 1, 1]``/``[C, 1, 1]`` and the conv has no bias and no other consumer."""
    uses = Counter(name for node in nodes for name in node.input)
    uses.update(graph_outputs)
    producer = {out: node for node in nodes for out in node.output}
    removed = set()
    for add in nodes:
        if add.op_type != "Add":
            continue
        for conv_out, const in (tuple(add.input), tuple(reversed(add.input))):
            conv = producer.get(conv_out)
            if conv is None or conv.op_type not in BIAS_INPUT or uses[conv_out] != 1 or const not in initializers:
                continue
            slot = BIAS_INPUT[conv.op_type]
            if len(conv.input) > slot and conv.input[slot]:
                continue
            bias = initializers[const]
            channels = initializers[conv.input[1]].shape[0] if conv.input[1] in initializers else None
            if channels is None or bias.size != channels or list(bias.shape) not in ([1, channels, 1, 1], [channels, 1, 1]):
                continue
            bias_name = const + "_as_bias"
            initializers[bias_name] = bias.reshape(channels)
            inputs = list(conv.input) + [""] * (slot + 1 - len(conv.input))
            inputs[slot] = bias_name
            del conv.input[:]
            conv.input.extend(inputs)
            conv.output[0] = add.output[0]
            removed.add(id(add))
            break
    kept = [n for n in nodes if id(n) not in removed]
    used = {name for node in kept for name in node.input}
    for name in [k for k in initializers if k not in used]:
        del initializers[name]
    return kept
