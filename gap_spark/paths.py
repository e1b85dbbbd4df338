"""Where a pipeline reads and writes: the raw CSVs, the dataset and the run directory (all URIs)."""
from __future__ import annotations

from dataclasses import dataclass

from gap_spark import fs


@dataclass(frozen=True)
class Paths:
    raw: str
    data: str
    run: str

    @classmethod
    def from_config(cls, config) -> "Paths":
        p = config.section("paths")
        return cls(raw=str(p["raw"]), data=str(p["data"]), run=str(p["run"]))

    def run_file(self, *parts: str) -> str:
        return fs.join(self.run, *parts)
