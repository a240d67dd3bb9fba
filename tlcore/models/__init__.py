"""The model zoo: specs with declared layer groups, one builder, new heads."""
from . import zoo as _zoo  # noqa: F401  (registers every model)
from .base import ModelSpec, Network
from .build import build_network, download_weights, imagenet_network, model_card, model_rows, weights_status
from .heads import make_head
from .registry import MODELS, register

__all__ = ["MODELS", "ModelSpec", "Network", "build_network", "download_weights", "imagenet_network", "make_head", "model_card",
           "model_rows", "register", "weights_status"]
