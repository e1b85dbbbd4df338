"""Stage entry point (moved here by the architecture step)."""
from gap_spark.evaluate import run_evaluate

__all__ = ["run_evaluate"]
