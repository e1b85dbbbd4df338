"""Stage entry point (moved here by the architecture step)."""
from gap_spark.ingest import run_ingest

__all__ = ["run_ingest"]
