"""Checkpoint versions: every layer stores one, old entries are upgraded, newer ones refused."""
import numpy as np
import paddle
import pytest

from paddle_dcn import (
    DCNv3,
    DCNv4,
    CoordConv,
    DeformConv2D,
    DeformPSRoIPool,
    DeformRoIPool,
    ModulatedDeformRoIPoolPack,
    SpatialTransformer,
)
from paddle_dcn.layers import VersionedLayer, load_state_dict, upgrade_state_dict


@pytest.mark.parametrize(
    "factory",
    [
        lambda: DeformConv2D(3, 4, 3),
        lambda: CoordConv(3, 4, 3),
        lambda: SpatialTransformer(),
        lambda: DeformRoIPool(3),
        lambda: ModulatedDeformRoIPoolPack(4, 3, fc_channels=8),
        lambda: DeformPSRoIPool(2, 3),
    ],
)
def test_every_layer_stores_its_version(factory):
    layer = factory()
    assert int(layer.state_dict()["version"].numpy()[0]) == type(layer).VERSION == 1


def test_every_public_layer_with_parameters_is_versioned():
    """Derived from paddle_dcn.layers' exports, so a new layer cannot be left out (DCNv3 and
    DCNv4 were). DefaultLocalization is SpatialTransformer's localisation net, covered by its
    version; AddCoords has no parameters."""
    import paddle_dcn.layers as layers

    classes = [getattr(layers, n) for n in layers.__all__]
    classes = [c for c in classes if isinstance(c, type) and issubclass(c, paddle.nn.Layer)]
    unversioned = {c.__name__ for c in classes if not issubclass(c, VersionedLayer)}
    assert unversioned == {"AddCoords", "DefaultLocalization"}
    for make in (lambda: DCNv3(8, groups=2), lambda: DCNv4(8, groups=2)):
        layer = make()
        state = layer.state_dict()
        assert int(state["version"].numpy()[0]) == 1
        del state["version"]  # a checkpoint of the unversioned release still loads
        missing, unexpected = load_state_dict(make(), state)
        assert not missing and not unexpected


class GainV1(VersionedLayer):
    """A layer as first released: one parameter ``scale``."""

    def __init__(self):
        super().__init__()
        self.scale = self.create_parameter([3])


class GainV2(VersionedLayer):
    """The same layer in a pretend later release, where ``scale`` became ``gain``."""

    VERSION = 2

    def __init__(self):
        super().__init__()
        self.gain = self.create_parameter([3])

    @classmethod
    def upgrade_state_dict(cls, state_dict, prefix, from_version):
        if from_version < 2:
            state_dict[prefix + "gain"] = state_dict.pop(prefix + "scale")


def test_old_checkpoint_is_upgraded_on_load():
    old = paddle.nn.Sequential(paddle.nn.Linear(3, 3), GainV1())
    new = paddle.nn.Sequential(paddle.nn.Linear(3, 3), GainV2())
    missing, unexpected = load_state_dict(new, old.state_dict())
    assert not missing and not unexpected
    np.testing.assert_array_equal(new[1].gain.numpy(), old[1].scale.numpy())
    assert int(new[1].version.numpy()[0]) == 2


def test_checkpoint_without_versions_counts_as_version_one():
    state = GainV1().state_dict()
    del state["version"]
    upgraded = upgrade_state_dict(GainV2(), dict(state))
    assert "gain" in upgraded and "scale" not in upgraded


def test_newer_checkpoint_is_refused_with_the_key():
    state = paddle.nn.Sequential(GainV2()).state_dict()
    with pytest.raises(ValueError, match="'0.version' is version 2"):
        load_state_dict(paddle.nn.Sequential(GainV1()), state)
