"""The model registry: one module per model, each defining ``SPEC``; nothing else names a model."""
from __future__ import annotations

import importlib

from gap_spark.models.base import ModelSpec

__all__ = ["MODEL_MODULES", "ModelSpec", "model_spec", "model_title", "registered_models"]

# Module names under gap_spark.models, in the order models are trained and shown.
MODEL_MODULES = ("lr", "rf")


def registered_models() -> dict[str, ModelSpec]:
    """Every registered model's spec, by name."""
    specs = (importlib.import_module(f"gap_spark.models.{m}").SPEC for m in MODEL_MODULES)
    return {spec.name: spec for spec in specs}


def model_spec(name: str) -> ModelSpec:
    """The spec of ``name`` (KeyError for a name no module registers)."""
    return registered_models()[name]


def model_title(name: str) -> str:
    """A model's title in prose ("logistic regression"); an unregistered name is shown as it is."""
    spec = registered_models().get(name)
    return spec.title if spec else name
