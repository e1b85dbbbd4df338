"""The stage registry: the one list of stages that the CLI, the pipeline and spark-submit read.

Each stage is a module ``gap_spark.stages.<name>`` with a function ``run_<name>(spark, config, paths)``
returning a summary dict. Modules are imported only when their stage runs.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["PIPELINE_STAGES", "STAGES", "Stage", "stage"]


@dataclass(frozen=True)
class Stage:
    """One stage: what it reads (besides its own config sections) and whether it needs Spark."""

    name: str
    help: str
    needs_spark: bool
    upstream: tuple[str, ...]
    sections: tuple[str, ...]
    submitted: bool = True  # run as its own spark-submit application by a scheduler

    def function(self) -> Callable[..., dict[str, Any]]:
        module = importlib.import_module(f"gap_spark.stages.{self.name}")
        func: Callable[..., dict[str, Any]] = getattr(module, f"run_{self.name}")
        return func


# In pipeline order.
STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("synth", "generate EVA-02-format CSVs with a controlled shift", False, (), ("synth",), submitted=False),
    Stage("ingest", "validate the CSVs and write the partitioned Parquet dataset", True, ("synth",), ("ingest",)),
    Stage("train", "train the models named in train.models", True, ("ingest",), ("train",)),
    Stage("evaluate", "evaluate the models on val and v2, with the gap and its interval", True,
          ("ingest", "train"), ("evaluate",)),
    Stage("shift", "measure the shift between val and v2 (train vs val as control)", True,
          ("ingest", "evaluate"), ("shift",)),
    Stage("visualize", "sample, embed with UMAP and t-SNE, and draw the figures", True,
          ("ingest", "evaluate", "shift"), ("visualize",)),
    Stage("report", "write report.html and report.md from a run", False,
          ("train", "evaluate", "shift", "visualize"), ("report",)),
)}
PIPELINE_STAGES = tuple(STAGES)


def stage(name: str) -> Stage:
    """The registered stage ``name`` (KeyError for an unknown one)."""
    return STAGES[name]
