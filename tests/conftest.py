"""Shared pytest fixtures."""
import numpy as np
import paddle
import pytest


@pytest.fixture(autouse=True)
def _seed() -> None:
    """Every test starts from the same random state."""
    paddle.seed(2024)
    np.random.seed(2024)


@pytest.fixture(params=["float64", "float32"])
def float_dtype(request) -> str:
    """The CPU dtypes every op supports."""
    return request.param
