"""Stage entry point (moved here by the architecture step)."""
from gap_spark.synth import run_synth

__all__ = ["run_synth"]
