"""Stage entry point (moved here by the architecture step)."""
from gap_spark.visualize import run_visualize

__all__ = ["run_visualize"]
