"""Stage entry point (moved here by the architecture step)."""
from gap_spark.report import run_report

__all__ = ["run_report"]
