"""The model registry: a name -> ModelSpec table that refuses duplicates."""
from __future__ import annotations

from .base import ModelSpec

MODELS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in MODELS:
        raise ValueError(f"model {spec.name!r} is already registered")
    MODELS[spec.name] = spec
    return spec
