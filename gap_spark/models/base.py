"""What every model of the registry provides: its MLlib params, estimator, grid, fit and summary extras.

A model is one module under :mod:`gap_spark.models` defining ``SPEC``, an instance of a subclass of
:class:`ModelSpec`. The train stage reads nothing else about a model, so adding one means one new
module (plus its config section in ``defaults.yaml`` and :mod:`gap_spark.core.settings`).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from pyspark.ml import Estimator
    from pyspark.ml.param import ParamMap
    from pyspark.sql import DataFrame, SparkSession

    from gap_spark.core.settings import TrainSettings, TuneSettings

__all__ = ["FitContext", "FitResult", "ModelSpec"]


@dataclass(frozen=True)
class FitContext:
    """What a fit needs besides its rows and params."""

    spark: "SparkSession"
    settings: "TrainSettings"
    rows: int  # rows of the frame being fitted
    checkpoint_dir: str  # a Spark URI, for models that checkpoint (RunDir.checkpoints)
    select: "DataFrame | None" = None  # the selection slice through this model's feature transform
    input_dim: int | None = None  # length of the features column the classifier reads
    classes: int | None = None  # K

    @property
    def heartbeat_s(self) -> float:
        """Seconds without news after which a fit logs Spark's task progress."""
        return self.settings.progress_seconds

    def scorer(self) -> Callable[[Any], dict[str, Any]] | None:
        """A fitted classifier -> its metrics on the selection slice (None without a slice)."""
        select = self.select
        if select is None:
            return None

        def score(classifier: Any) -> dict[str, Any]:
            from gap_spark.ops.train_split import selection_metrics

            return selection_metrics(classifier.transform(select))

        return score


@dataclass(frozen=True)
class FitResult:
    """A fitted classifier and what ``train_summary.json`` records about its fit."""

    classifier: Any  # a pyspark.ml Model
    iterations: int  # optimiser iterations, trees, ...: counted in ModelSpec.iteration_unit
    objective_history: list[float] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)  # model-specific summary entries
    phases: dict[str, float] = field(default_factory=dict)  # seconds of phases inside the fit


@dataclass(frozen=True)
class ModelSpec(ABC):
    """One model: its short name (``train.models``, directory names), its title in prose, and its training.

    Subclasses implement the abstract methods; the params are MLlib's names (``regParam``, ...).
    """

    name: str
    title: str
    iteration_unit: ClassVar[str] = "iterations"  # what FitResult.iterations counts, for the log
    pca_key: ClassVar[str] = "train.pca_k"  # the config key of the model's PCA setting, for messages

    @abstractmethod
    def params(self, settings: "TrainSettings") -> dict[str, Any]:
        """The estimator's MLlib params from the (checked) settings."""

    @abstractmethod
    def pca_k(self, settings: "TrainSettings") -> int | None:
        """The configured PCA components in front of the model (None: all standardised features)."""

    @abstractmethod
    def estimator(self, params: dict[str, Any], features_col: str) -> "Estimator[Any]":
        """An unfitted estimator reading ``features_col`` and ``label``."""

    def shaped(self, params: dict[str, Any], input_dim: int, classes: int) -> dict[str, Any]:
        """The params completed with the data's shape (input width, K); default: unchanged."""
        return params

    @abstractmethod
    def grid(self, estimator: "Estimator[Any]", tune: "TuneSettings") -> list["ParamMap"]:
        """The grid search's points (``train.tune``) over ``estimator``'s params."""

    @abstractmethod
    def fit(self, frame: "DataFrame", params: dict[str, Any], features_col: str, ctx: FitContext) -> FitResult:
        """Fit on every row of ``frame`` (label with its metadata, and ``features_col``)."""

    def prepare(self, frame: "DataFrame", ctx: FitContext) -> "DataFrame":
        """The transformed training frame as this model wants it (partitions, ...); default: unchanged."""
        return frame
