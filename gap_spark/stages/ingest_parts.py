"""What one ingest task writes: its good rows as one Parquet file, and (train only) its selection candidates.

Runs in Spark's Python workers. A file's name depends only on the task's partition, and it is written
under a temporary name and renamed when complete, so a retried or speculative task replaces it with the
same content and a task that dies leaves only a ``_tmp-`` file (which readers skip and ingest removes).
"""
from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pyarrow as pa

from gap_spark.core import fs
from gap_spark.ops.csv_lines import output_arrow_schema
from gap_spark.ops.select_split import hash_uniform_ids

__all__ = ["PartSink", "part_name", "remove_temporary_files"]

TMP_PREFIX = "_tmp-"


def part_name(index: int) -> str:
    """``part-<index>.parquet``: the name of a task's file (a retry writes the same name)."""
    return f"part-{index:05d}.parquet"


class _PartWriter:
    """One Parquet file written in row groups of about ``row_group_rows`` rows, renamed when closed."""

    def __init__(self, out_uri: str, index: int, attempt: int, compression: str, row_group_rows: int) -> None:
        self.filesystem, self.base = fs.resolve(out_uri)
        self.final = f"{self.base}/{part_name(index)}"
        self.tmp = f"{self.base}/{TMP_PREFIX}{index:05d}-{attempt}-{uuid.uuid4().hex[:6]}.parquet"
        self.compression = compression
        self.row_group_rows = row_group_rows
        self.schema = output_arrow_schema()
        self.writer: Any = None
        self.pending: list[pa.RecordBatch] = []
        self.pending_rows = 0
        self.rows = 0

    def add(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        self.pending.append(batch)
        self.pending_rows += batch.num_rows
        self.rows += batch.num_rows
        if self.pending_rows >= self.row_group_rows:
            self.flush()

    def flush(self) -> None:
        import pyarrow.parquet as pq

        if not self.pending:
            return
        if self.writer is None:
            self.filesystem.create_dir(self.base, recursive=True)
            self.writer = pq.ParquetWriter(self.filesystem.open_output_stream(self.tmp), self.schema,
                                           compression=self.compression)
        self.writer.write_table(pa.Table.from_batches(self.pending, schema=self.schema))
        self.pending, self.pending_rows = [], 0

    def close(self) -> str | None:
        """The file's name, or None when it has no rows (then no file is written)."""
        self.flush()
        if self.writer is None:
            return None
        self.writer.close()
        self.filesystem.move(self.tmp, self.final)
        return self.final.rsplit("/", 1)[1]


class PartSink:
    """A task's good rows: one file of the split, and rows with ``u < threshold`` to the candidates.

    Parameters
    ----------
    out_uri : str
        The split's directory.
    index, attempt : int
        The task's partition (the file's name) and attempt (its temporary name).
    compression : str
        Parquet codec.
    classes : int
        K: the rows are counted per class.
    candidates_uri : str, optional
        Where candidates for the selection split go; None: no candidates.
    threshold : float
        Rows with ``hash_uniform(seed, row_id) < threshold`` are candidates.
    seed : int
        The selection seed.
    row_group_rows : int
        Rows per Parquet row group.
    """

    def __init__(self, out_uri: str, index: int, attempt: int, compression: str, classes: int,
                 candidates_uri: str | None = None, threshold: float = 0.0, seed: int = 0,
                 row_group_rows: int = 16_384) -> None:
        self.main = _PartWriter(out_uri, index, attempt, compression, row_group_rows)
        self.candidates = (_PartWriter(candidates_uri, index, attempt, compression, row_group_rows)
                           if candidates_uri and threshold > 0 else None)
        self.threshold = threshold
        self.seed = seed
        self.class_counts = np.zeros(classes, dtype=np.int64)

    def add(self, batch: pa.RecordBatch) -> None:
        """Write one batch of good rows (the schema of :func:`output_arrow_schema`)."""
        if not batch.num_rows:
            return
        labels = batch.column(2).to_numpy()
        self.class_counts += np.bincount(labels, minlength=self.class_counts.size)
        if self.candidates is None:
            self.main.add(batch)
            return
        u = hash_uniform_ids(batch.column(0).to_numpy(), self.seed)
        chosen = pa.array(u < self.threshold)
        self.candidates.add(batch.filter(chosen))
        self.main.add(batch.filter(pa.compute.invert(chosen)))

    def close(self) -> dict[str, Any]:
        """``file, rows, candidate_file, candidate_rows, class_counts`` ({label: rows}, non-zero only)."""
        result: dict[str, Any] = {"file": self.main.close(), "rows": self.main.rows,
                                  "candidate_file": None, "candidate_rows": 0}
        if self.candidates is not None:
            result["candidate_file"] = self.candidates.close()
            result["candidate_rows"] = self.candidates.rows
        nonzero = np.flatnonzero(self.class_counts)
        result["class_counts"] = {int(c): int(self.class_counts[c]) for c in nonzero}
        return result


def remove_temporary_files(directory: str) -> None:
    """Delete the ``_tmp-`` files that task attempts which died mid-write (a lost executor) left."""
    for name in fs.list_dir(directory):
        if name.startswith(TMP_PREFIX):
            fs.delete(fs.join(directory, name))
