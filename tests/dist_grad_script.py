"""Run under ``paddle.distributed.launch --nproc_per_node 2``: every parameter gradient of a net
holding each paddle_dcn layer with parameters must, under ``paddle.DataParallel``, be the mean
of the two processes' own gradients. Rank 0 saves, per parameter, max |DP - mean| and
max |own - mean| to ``sys.argv[1]`` (an .npz)."""
import sys

import numpy as np
import paddle
import paddle.distributed as dist

import paddle_dcn as P


LAYERS = {
    "dcn_v2": lambda: P.DeformConv2D(8, 8, 3, padding=1),
    "dcn_v1": lambda: P.DeformConv2D(8, 8, 3, padding=1, modulated=False, groups=2),
    "dcn_v3": lambda: P.DCNv3(8, groups=2),
    "dcn_v4": lambda: P.DCNv4(8, groups=2),
    "coord_conv": lambda: P.CoordConv(8, 4, 3, padding=1),
    "sampling": lambda: P.DeformableSampling2D(8),
    "roi_pack": lambda: P.DeformRoIPoolPack(8, 2, fc_channels=16),
    "roi_mpack": lambda: P.ModulatedDeformRoIPoolPack(8, 2, fc_channels=16),
}


class AllLayers(paddle.nn.Layer):
    """Every layer of ``LAYERS`` on one [N, 8, 8, 8] input, summed into one loss."""

    def __init__(self) -> None:
        super().__init__()
        self.names = list(LAYERS)
        for name in self.names:
            setattr(self, name, LAYERS[name]())

    def forward(self, x, boxes, boxes_num):
        loss = 0.0
        for name in self.names:
            layer = getattr(self, name)
            out = layer(x, boxes, boxes_num) if name.startswith("roi") else layer(x)
            loss = loss + (out * out).mean()
        return loss


def make() -> AllLayers:
    paddle.seed(0)
    net = AllLayers()
    for p in net.parameters():  # off the zero initialisation of the offset branches
        p.set_value(p + 0.05 * paddle.randn(p.shape))
    return net


dist.init_parallel_env()
rank = dist.get_rank()
paddle.seed(100 + rank)
x = paddle.randn([2, 8, 8, 8])
boxes = paddle.to_tensor([[0.5, 1.0, 6.0, 7.0], [1.0, 0.0, 7.5, 5.0], [2.0, 2.0, 5.0, 6.5]]) + rank
boxes_num = paddle.to_tensor([2, 1], dtype="int32")
own = make()
own(x, boxes, boxes_num).backward()
net = make()
parallel = paddle.DataParallel(net)  # kept: its reducer runs in the backward
parallel(x, boxes, boxes_num).backward()
result = {}
for (name, p), (_, q) in zip(net.named_parameters(), own.named_parameters()):
    gathered = []
    dist.all_gather(gathered, q.grad.clone())
    mean = (gathered[0] + gathered[1]) / 2
    result[name] = np.array([float((p.grad - mean).abs().max()), float((q.grad - mean).abs().max()),
                             float(mean.abs().max())])
if rank == 0:
    np.savez(sys.argv[1], **result)
