"""Kept for models saved before the move to :mod:`gap_spark.ops.features`.

PySpark's Python pipeline writer records each Python stage's qualified class name in its metadata and
imports that name when the model is loaded; models trained before the move name
``gap_spark.features.ArrayToVector``. New code imports :mod:`gap_spark.ops.features`.
"""
from gap_spark.ops.features import ArrayToVector

__all__ = ["ArrayToVector"]
