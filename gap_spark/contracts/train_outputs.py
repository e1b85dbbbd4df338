"""The typed loader of ``RUN_DIR/train_summary.json`` (train's record: each model's fit and the selection
slice it was scored on); the same leaf readers as :mod:`.run_outputs`."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gap_spark.contracts.run_outputs import (
    DatasetSummary,
    _dataset,
    _int,
    _num,
    _obj,
    _objects,
    is_number,
)

__all__ = ["ModelTraining", "SelectionRecord", "TrainSummary", "parse_train_summary"]


@dataclass(frozen=True)
class ModelTraining:
    """One trained model: its params as written, rows, iterations, objective history, seconds per phase, and
    its accuracy on the selection slice (None when the slice was empty or the run predates it)."""

    params: Mapping[str, Any]
    rows: int | None
    iterations: int | None
    objective_history: tuple[float, ...]
    seconds: Mapping[str, float]
    selection_accuracy: float | None = None


@dataclass(frozen=True)
class SelectionRecord:
    """Where train made its choices: ``source`` is ``select`` (ingest's ``split=select``) or ``fallback`` (a
    hash-held-out share of train, ``fallback_fraction``); ``test_splits_read`` says whether val or v2 were."""

    source: str
    split: str | None
    rows: int | None
    fallback_fraction: float | None
    test_splits_read: bool | None


@dataclass(frozen=True)
class TrainSummary:
    models: Mapping[str, ModelTraining]
    dataset: DatasetSummary | None
    seconds: float | None
    selection: SelectionRecord | None = None


def _selection_record(x: Any) -> SelectionRecord | None:
    if not isinstance(x, Mapping) or not isinstance(x.get("source"), str):
        return None
    fallback = x.get("fallback")
    read = x.get("test_splits_read")
    return SelectionRecord(str(x["source"]), x["split"] if isinstance(x.get("split"), str) else None,
                           _int(x.get("rows")),
                           _num(fallback.get("fraction")) if isinstance(fallback, Mapping) else None,
                           read if isinstance(read, bool) else None)


def parse_train_summary(data: Mapping[str, Any], source: str, problems: list[str]) -> TrainSummary:
    """The train summary's content as :class:`TrainSummary` (see :func:`parse_metrics`)."""
    models = {}
    for name, m in _objects(data, "models", source, problems).items():
        history = m.get("objective_history")
        seconds = m.get("seconds")
        models[name] = ModelTraining(
            dict(_obj(m, "params", f"{source} (model {name})", problems)), _int(m.get("rows")),
            _int(m.get("iterations")),
            tuple(float(v) for v in history if is_number(v)) if isinstance(history, list) else (),
            {str(k): float(v) for k, v in seconds.items() if is_number(v)} if isinstance(seconds, Mapping) else {},
            _num(selection.get("accuracy")) if isinstance(selection := m.get("selection"), Mapping) else None)
    return TrainSummary(models, _dataset(data), _num(data.get("seconds")), _selection_record(data.get("selection")))
