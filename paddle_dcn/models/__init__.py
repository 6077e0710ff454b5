"""Backbones and task models, registered by name (see paddle_dcn.registry)."""
from .classifier import Classifier, SimpleConvNet, build_model
from .resnet import ResNet

__all__ = ["Classifier", "ResNet", "SimpleConvNet", "build_model"]
from . import detection  # noqa: F401,E402 - registers FasterRCNN, RFCN
