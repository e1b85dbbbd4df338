"""Stage entry point (moved here by the architecture step)."""
from gap_spark.train import run_train

__all__ = ["run_train"]
