"""The run directory: every path under RUN_DIR is spelled here, and nowhere else.

::

    RUN_DIR/models/<model>/                 MLlib PipelineModels (feature stages + classifier)
    RUN_DIR/tuning/<model>.csv              grid-search table (train --tune)
    RUN_DIR/train_summary.json              train
    RUN_DIR/metrics.json                    evaluate
    RUN_DIR/predictions/<model>/<split>/    evaluate (Parquet)
    RUN_DIR/per_class/<model>/ and .csv     evaluate (with class names and wnids when known)
    RUN_DIR/per_class/_superclasses/<model>.csv  evaluate (accuracy per superclass)
    RUN_DIR/confused_pairs/<model>.csv      evaluate
    RUN_DIR/shift.json                      shift
    RUN_DIR/shift/feature_stats/ and .csv   shift
    RUN_DIR/explain.json                    explain
    RUN_DIR/figures/*.png, _figures.json    visualize
    RUN_DIR/embedding.parquet               visualize
    RUN_DIR/report.html, report.md          report
    RUN_DIR/_stages/<stage>.json            the pipeline's completion markers
    RUN_DIR/_checkpoints/                   Spark checkpoints (forest with cache_node_ids)
    RUN_DIR/mlflow/mlflow.db, artifacts/    the default MLflow store (tracking.mlflow with no tracking.uri)
"""
from __future__ import annotations

from dataclasses import dataclass

from gap_spark.core import fs

__all__ = ["EXPLAIN_FIGURES", "VISUALIZE_FIGURES", "RunDir"]

# The file name of each figure in RUN_DIR/figures/, by the key its stage draws it under.
VISUALIZE_FIGURES = {
    "by_set": "embedding_by_set.png",
    "by_class": "embedding_by_class.png",
    "density": "embedding_density_diff.png",
    "features": "feature_shifts.png",
    "per_class": "per_class_accuracy.png",
    "reliability": "reliability.png",
    "pairs": "confused_pairs.png",
}
EXPLAIN_FIGURES = {"waterfall": "explain_waterfall.png", "mitigations": "explain_mitigations.png"}


@dataclass(frozen=True)
class RunDir:
    """Paths (URIs) of everything a run holds, from its root."""

    root: str

    def _file(self, *parts: str) -> str:
        return fs.join(self.root, *parts)

    # train
    @property
    def models(self) -> str:
        return self._file("models")

    def model(self, name: str) -> str:
        return self._file("models", name)

    def tuning_table(self, model: str) -> str:
        return self._file("tuning", f"{model}.csv")

    @property
    def train_summary(self) -> str:
        return self._file("train_summary.json")

    @property
    def checkpoints(self) -> str:
        return self._file("_checkpoints")

    # evaluate
    @property
    def metrics(self) -> str:
        return self._file("metrics.json")

    @property
    def predictions_root(self) -> str:
        return self._file("predictions")

    def predictions(self, model: str, split: str) -> str:
        return self._file("predictions", model, split)

    @property
    def per_class_root(self) -> str:
        return self._file("per_class")

    def per_class_parquet(self, model: str) -> str:
        return self._file("per_class", model)

    def per_class_csv(self, model: str) -> str:
        return self._file("per_class", f"{model}.csv")

    def per_superclass_csv(self, model: str) -> str:
        return self._file("per_class", "_superclasses", f"{model}.csv")

    @property
    def confused_pairs_root(self) -> str:
        return self._file("confused_pairs")

    def confused_pairs_csv(self, model: str) -> str:
        return self._file("confused_pairs", f"{model}.csv")

    # shift and explain
    @property
    def shift(self) -> str:
        return self._file("shift.json")

    @property
    def feature_stats_parquet(self) -> str:
        return self._file("shift", "feature_stats")

    @property
    def feature_stats_csv(self) -> str:
        return self._file("shift", "feature_stats.csv")

    @property
    def explain(self) -> str:
        return self._file("explain.json")

    # visualize and report
    @property
    def figures(self) -> str:
        return self._file("figures")

    def figure(self, file_name: str) -> str:
        return self._file("figures", file_name)

    @property
    def figures_index(self) -> str:
        return self._file("figures", "_figures.json")

    @property
    def embedding(self) -> str:
        return self._file("embedding.parquet")

    @property
    def report_html(self) -> str:
        return self._file("report.html")

    @property
    def report_md(self) -> str:
        return self._file("report.md")

    # tracking
    @property
    def mlflow_db(self) -> str:
        return self._file("mlflow", "mlflow.db")

    @property
    def mlflow_artifacts(self) -> str:
        return self._file("mlflow", "artifacts")

    # pipeline
    def stage_marker(self, stage: str) -> str:
        return self._file("_stages", f"{stage}.json")

    def relative(self, path: str) -> str:
        """``path`` relative to the root (for messages and report footers)."""
        root = self.root.rstrip("/") + "/"
        return path[len(root):] if path.startswith(root) else path
