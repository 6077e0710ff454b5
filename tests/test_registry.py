"""Registries: decorator registration, duplicates refused, unknown names/keys listed; schedules."""
import math

import numpy as np
import paddle
import pytest

from paddle_dcn.engine import optim  # noqa: F401 - registers optimizers and schedules
from paddle_dcn.registry import MODELS, OPTIMIZERS, SCHEDULERS, Registry, build


def test_register_get_and_duplicates():
    reg = Registry("widget")

    @reg.register()
    class Gear:
        def __init__(self, teeth: int = 8):
            self.teeth = teeth

    @reg.register("sprocket")
    def make(teeth: int):
        return ("sprocket", teeth)

    assert reg.get("Gear") is Gear and "sprocket" in reg and reg.names() == ["Gear", "sprocket"]
    assert build(reg, {"type": "Gear", "teeth": 3}).teeth == 3
    assert build(reg, {"type": "sprocket"}, teeth=5) == ("sprocket", 5)
    with pytest.raises(KeyError, match="already registered"):
        reg.register("Gear")(dict)
    with pytest.raises(KeyError) as err:
        reg.get("Gearr")
    assert "Gear" in str(err.value) and "sprocket" in str(err.value)


def test_build_errors_list_valid_keys_and_types():
    with pytest.raises(KeyError) as err:
        build(MODELS, {"type": "Classifier", "num_class": 3, "backbone": {}})
    assert "num_class" in str(err.value) and "num_classes" in str(err.value)
    with pytest.raises(KeyError) as err:
        build(MODELS, {"num_classes": 3})
    assert "Classifier" in str(err.value)
    with pytest.raises(KeyError) as err:
        build(OPTIMIZERS, {"type": "Adam"})
    assert "AdamW" in str(err.value) and "Momentum" in str(err.value)
    cfg = {"type": "Classifier", "num_classes": 3, "backbone": {"type": "SimpleConvNet"}}
    build(MODELS, cfg)
    assert cfg == {"type": "Classifier", "num_classes": 3, "backbone": {"type": "SimpleConvNet"}}


def _lrs(sched, n):
    out = []
    for _ in range(n):
        out.append(sched.get_lr())
        sched.step()
    return out


def test_warmup_cosine_matches_formula():
    sched = build(SCHEDULERS, {"type": "WarmupCosine", "base_lr": 0.2, "warmup_epochs": 1,
                               "warmup_start_factor": 0.1, "min_lr": 0.01}, epochs=3, iters_per_epoch=4)
    got = _lrs(sched, 12)
    want = []
    for it in range(12):
        if it < 4:
            want.append(0.2 * (0.1 + 0.9 * it / 4))
        else:
            p = (it - 4) / 8
            want.append(0.01 + 0.5 * 0.19 * (1 + math.cos(math.pi * p)))
    assert got == pytest.approx(want, rel=1e-12)


def test_warmup_step_and_state_round_trip():
    cfg = {"type": "WarmupStep", "base_lr": 1.0, "milestones": [2, 3], "gamma": 0.5}
    sched = build(SCHEDULERS, cfg, epochs=4, iters_per_epoch=2)
    assert _lrs(sched, 8) == pytest.approx([1, 1, 1, 1, 0.5, 0.5, 0.25, 0.25])
    a = build(SCHEDULERS, cfg, epochs=4, iters_per_epoch=2)
    _lrs(a, 5)
    b = build(SCHEDULERS, cfg, epochs=4, iters_per_epoch=2)
    b.set_state_dict(a.state_dict())
    assert _lrs(b, 3) == _lrs(a, 3)


def test_optimizers_decay_only_weights():
    lin = paddle.nn.Linear(3, 2)
    sched = build(SCHEDULERS, {"type": "WarmupCosine", "base_lr": 0.1}, epochs=1, iters_per_epoch=1)
    opt = optim.build_optimizer({"type": "Momentum", "momentum": 0.0, "weight_decay": 0.5},
                                lin.parameters(), sched)
    w0, b0 = lin.weight.numpy().copy(), lin.bias.numpy().copy()
    loss = (lin.bias * 0.0).sum() + (lin.weight * 0.0).sum()  # zero gradients: only decay moves
    loss.backward()
    opt.step()
    assert lin.weight.numpy() == pytest.approx(w0 * (1 - 0.1 * 0.5), rel=1e-6)
    assert lin.bias.numpy() == pytest.approx(b0)
    adamw = optim.build_optimizer({"type": "AdamW", "weight_decay": 0.01}, lin.parameters(), sched, grad_clip_norm=1.0)
    assert isinstance(adamw, paddle.optimizer.AdamW)


def test_gradient_clipping_by_global_norm():
    lin = paddle.nn.Linear(4, 1, bias_attr=False)
    w0 = lin.weight.numpy().copy()
    sched = build(SCHEDULERS, {"type": "WarmupCosine", "base_lr": 0.5}, epochs=1, iters_per_epoch=10)
    opt = optim.build_optimizer({"type": "Momentum", "momentum": 0.0, "weight_decay": 0.0},
                                lin.parameters(), sched, grad_clip_norm=0.1)
    x = paddle.to_tensor([[3.0, 4.0, 0.0, 0.0]])
    lin(x).sum().backward()  # gradient of the weight: x^T, norm 5
    opt.step()
    expected = w0 - 0.5 * (x.numpy().T / 5.0 * 0.1)
    np.testing.assert_allclose(lin.weight.numpy(), expected, rtol=1e-5)
