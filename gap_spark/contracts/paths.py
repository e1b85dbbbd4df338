"""Where a pipeline reads and writes: the raw CSVs, the dataset and the run directory (all URIs)."""
from __future__ import annotations

from dataclasses import dataclass

from gap_spark.contracts.run import RunDir
from gap_spark.core.settings import PathSettings

__all__ = ["Paths"]


@dataclass(frozen=True)
class Paths:
    """The three locations a stage may touch; ``run_dir`` spells every path under the run."""

    raw: str
    data: str
    run: str

    @classmethod
    def from_settings(cls, settings: PathSettings) -> "Paths":
        return cls(raw=settings.raw, data=settings.data, run=settings.run)

    @classmethod
    def from_config(cls, config: "object") -> "Paths":
        """The ``paths`` section of a :class:`~gap_spark.core.config.Config`."""
        return cls.from_settings(config.settings.paths)  # type: ignore[attr-defined]

    @property
    def run_dir(self) -> RunDir:
        return RunDir(self.run)
