"""What every model of the registry provides (filled in by the architecture step's models work)."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ModelSpec"]


@dataclass(frozen=True)
class ModelSpec:
    """One model: its short name (``train.models``, directory names) and its title in prose."""

    name: str
    title: str
