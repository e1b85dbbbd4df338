"""The model registry: one module per model, each defining ``SPEC``; nothing else names a model.

Adding a model: a module ``gap_spark/models/<name>.py`` whose ``SPEC`` implements
:class:`~gap_spark.models.base.ModelSpec`, its name in :data:`MODEL_MODULES`, and its config section.
"""
from __future__ import annotations

import importlib
from collections.abc import Iterable

from gap_spark.core.errors import ConfigError
from gap_spark.models.base import ModelSpec

__all__ = ["MODEL_MODULES", "ModelSpec", "model_spec", "model_title", "registered_models", "selected_models"]

# Module names under gap_spark.models, in the order models are trained and shown.
MODEL_MODULES = ("lr", "rf", "mlp")


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


def selected_models(names: Iterable[str]) -> list[ModelSpec]:
    """The specs of ``train.models``, in its order; an unregistered name is a one-line ConfigError.

    Parameters
    ----------
    names : iterable of str
        ``config.settings.train.models`` (already lower-cased, de-duplicated and non-empty).

    Returns
    -------
    list of ModelSpec
    """
    registry = registered_models()
    for name in names:
        if name not in registry:
            raise ConfigError(f"train.models: unknown model '{name}' (choose from {', '.join(registry)})")
    return [registry[name] for name in names]
