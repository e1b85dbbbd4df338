"""The stage registry: the one list of stages that the CLI, the pipeline and spark-submit read.

Each stage is a module ``gap_spark.stages.<name>`` with a function ``run_<name>(spark, config, paths)``
returning a summary dict. Modules are imported only when their stage runs.
"""
from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from gap_spark.core import fs
from gap_spark.core.errors import GapSparkError
from gap_spark.core.locks import hold_locks
from gap_spark.core.progress import stage_heartbeat

if TYPE_CHECKING:
    from gap_spark.contracts.paths import Paths
    from gap_spark.core.config import Config

__all__ = ["PIPELINE_STAGES", "STAGES", "Stage", "guarded", "run_stage", "stage"]

Location = Literal["raw", "data", "run"]


@dataclass(frozen=True)
class Stage:
    """One stage: what it reads (besides its own config sections), what it writes, whether it needs Spark."""

    name: str
    help: str
    needs_spark: bool
    upstream: tuple[str, ...]
    sections: tuple[str, ...]
    writes: tuple[Location, ...]
    submitted: bool = True  # run as its own spark-submit application by a scheduler
    atomic: bool = False  # its output appears all at once or not at all (staging + rename)

    def function(self) -> Callable[..., dict[str, Any]]:
        """``run_<name>``, logging a progress line every ``spark.progress_seconds`` while it runs when
        stderr is not a terminal (:func:`gap_spark.core.progress.stage_heartbeat`)."""
        module = importlib.import_module(f"gap_spark.stages.{self.name}")
        func: Callable[..., dict[str, Any]] = getattr(module, f"run_{self.name}")
        name = self.name

        @functools.wraps(func)
        def run(spark: Any, config: "Config", paths: "Paths", **options: Any) -> dict[str, Any]:
            with stage_heartbeat(spark, name, config.settings.spark.progress_seconds):
                return func(spark, config, paths, **options)

        return run

    def written_dirs(self, paths: "Paths") -> list[str]:
        return [getattr(paths, where) for where in self.writes]


# In pipeline order.
STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("synth", "generate EVA-02-format CSVs with a controlled shift", False, (), ("synth",), ("raw",),
          submitted=False),
    Stage("ingest", "validate the CSVs and write the partitioned Parquet dataset", True, ("synth",), ("ingest",),
          ("data",), atomic=True),
    Stage("train", "train the models named in train.models", True, ("ingest",), ("train",), ("run",)),
    Stage("evaluate", "evaluate the models on val and v2, with the gap and its interval", True,
          ("ingest", "train"), ("evaluate", "classes"), ("run",)),
    Stage("shift", "measure the shift between val and v2 (train vs val as control)", True,
          ("ingest", "evaluate"), ("shift",), ("run",)),
    Stage("explain", "split the gap into label mix, covariate shift and residual; estimate v2 accuracy "
          "without labels; measure mitigations", True, ("ingest", "evaluate", "shift"), ("explain",), ("run",)),
    Stage("visualize", "sample, embed with UMAP and t-SNE, and draw the figures", True,
          ("ingest", "evaluate", "shift"), ("visualize",), ("run",)),
    Stage("report", "write report.html and report.md from a run", False,
          ("train", "evaluate", "shift", "explain", "visualize"), ("report",), ("run",)),
)}
PIPELINE_STAGES = tuple(STAGES)


def _check_writable(directories: Iterable[str]) -> None:
    for directory in directories:
        try:
            fs.check_writable(directory)
        except (PermissionError, NotADirectoryError) as exc:
            raise GapSparkError(f"cannot write the output: {exc}") from None


@contextmanager
def guarded(names: Iterable[str], config: "Config", paths: "Paths") -> Iterator[None]:
    """Before any work: check that the stages can write their outputs, then lock those directories.

    Preflight takes seconds, so a read-only or misplaced output fails before a fit, not after it. The
    locks (:mod:`gap_spark.core.locks`) are held for the block; a stage run inside it takes them again
    at no cost, so the pipeline wraps all its stages and the CLI wraps one.
    """
    directories = sorted({d for name in names for d in STAGES[name].written_dirs(paths)})
    _check_writable(directories)
    with hold_locks(directories, config.settings.locks.stale_after_s):
        yield


def run_stage(name: str, spark: Any, config: "Config", paths: "Paths", **options: Any) -> dict[str, Any]:
    """Run one stage under its preflight and locks (re-entrant inside :func:`guarded`)."""
    with guarded([name], config, paths):
        return STAGES[name].function()(spark, config, paths, **options)


def stage(name: str) -> Stage:
    """The registered stage ``name`` (KeyError for an unknown one)."""
    return STAGES[name]
