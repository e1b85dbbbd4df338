"""Stage entry point (moved here by the architecture step)."""
from gap_spark.shift import run_shift

__all__ = ["run_shift"]
