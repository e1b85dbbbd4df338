"""The driver's side of the selection split: choose it among the tasks' candidates, and rewrite files.

The tasks wrote the train rows with ``u < t`` to small candidate files and counted their rows per class
(:class:`gap_spark.stages.ingest_parts.PartSink`). Knowing the class counts, the driver reads only the
candidates, keeps per class its quota of rows with the smallest ``u`` as ``split=select`` and writes the
rest back as one more train file. When a class has fewer candidates than its quota (rare, by the
margin of :func:`~gap_spark.ops.select_split.candidate_threshold`), its next rows are taken out of the
train files that hold them, so the slice is exactly the same whatever the tasks were.
"""
from __future__ import annotations

import logging
import posixpath
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gap_spark.contracts.dataset import SELECT_SOURCE, SplitResult, split_path
from gap_spark.core import fs
from gap_spark.ops.csv_lines import output_arrow_schema
from gap_spark.ops.select_split import (
    candidate_threshold,
    choose_select,
    hash_uniform_ids,
    select_quotas,
    shortfall,
)
from gap_spark.stages.ingest_parts import part_name

__all__ = [
    "SelectPlan", "SelectResult", "carve_select", "count_labels", "finish_select", "parquet_files", "read_files",
    "rewrite_without", "select_plan", "write_file",
]

log = logging.getLogger(__name__)

ROW_GROUP_ROWS = 16_384
# Inside the staging directory: the train tasks' candidate files, gone before the commit.
CANDIDATES_DIR = "_select_candidates"


@dataclass(frozen=True)
class SelectPlan:
    """What the tasks of the train split need: where candidates go, the threshold on ``u`` and the seed."""

    candidates: str
    threshold: float
    seed: int


@dataclass
class SelectResult:
    """What the carve did: rows in the slice, candidates written back to train, rows pulled from train."""

    rows: int
    surplus: int
    pulled: int
    quotas: dict[int, int] = field(default_factory=dict)


def parquet_files(directory: str) -> list[str]:
    """The Parquet files directly under ``directory`` (URIs), by name."""
    if not fs.exists(directory):
        return []
    return [fs.join(directory, n) for n in fs.list_dir(directory) if n.endswith(".parquet") and not n.startswith("_")]


def read_files(files: Iterable[str], columns: list[str] | None = None) -> pa.Table:
    """The rows of several Parquet files of the dataset schema, as one table (empty when none)."""
    tables = []
    for uri in files:
        filesystem, path = fs.resolve(uri)
        tables.append(pq.read_table(path, filesystem=filesystem, columns=columns))
    if not tables:
        schema = output_arrow_schema()
        return schema.empty_table() if columns is None else pa.schema([schema.field(c) for c in columns]).empty_table()
    return pa.concat_tables(tables)


def write_file(table: pa.Table, uri: str, compression: str) -> None:
    """Write ``table`` as one Parquet file through a temporary name and a rename."""
    filesystem, path = fs.resolve(uri)
    filesystem.create_dir(posixpath.dirname(path), recursive=True)
    tmp = f"{posixpath.dirname(path)}/_tmp-{posixpath.basename(path)}"
    with filesystem.open_output_stream(tmp) as out:
        pq.write_table(table.cast(output_arrow_schema()), out, compression=compression, row_group_size=ROW_GROUP_ROWS)
    filesystem.move(tmp, path)


def rewrite_without(uri: str, drop: np.ndarray, compression: str) -> pa.Table:
    """Rewrite one file without the rows where ``drop`` is true; returns the rows taken out.

    A file left with no rows is deleted.
    """
    table = read_files([uri])
    keep = pa.array(~drop)
    removed = table.filter(pa.array(drop))
    kept = table.filter(keep)
    if kept.num_rows:
        write_file(kept, uri, compression)
    else:
        fs.delete(uri)
    return removed


def _pull(train_dir: str, missing: Mapping[int, int], seed: int, compression: str) -> pa.Table:
    """Take the ``missing[c]`` rows of each class with the smallest ``(u, row_id)`` out of the train files."""
    files = parquet_files(train_dir)
    keys = []
    for i, uri in enumerate(files):
        table = read_files([uri], ["row_id", "label"])
        ids, labels = table.column("row_id").to_numpy(), table.column("label").to_numpy()
        inside = np.isin(labels, list(missing))
        keys.append(pa.table({"file": np.full(int(inside.sum()), i), "row_id": ids[inside], "label": labels[inside]}))
    if not keys:
        return output_arrow_schema().empty_table()
    table = pa.concat_tables(keys)
    ids, labels = table.column("row_id").to_numpy(), table.column("label").to_numpy()
    chosen = choose_select(ids, labels, hash_uniform_ids(ids, seed), missing)
    pulled = []
    where = table.column("file").to_numpy()
    for i in np.unique(where[chosen]).tolist():
        file_ids = read_files([files[i]], ["row_id"]).column("row_id").to_numpy()
        pulled.append(rewrite_without(files[i], np.isin(file_ids, ids[chosen & (where == i)]), compression))
    return pa.concat_tables(pulled) if pulled else output_arrow_schema().empty_table()


def carve_select(train_dir: str, candidates_dir: str, select_dir: str, class_counts: Mapping[int, int],
                 fraction: float, seed: int, compression: str, next_index: int) -> SelectResult:
    """Write ``split=select`` from the candidates and put the other candidates back into train.

    Parameters
    ----------
    train_dir, candidates_dir, select_dir : str
        The train split's directory, the tasks' candidate files and the selection split's directory.
    class_counts : mapping of int to int
        Good train-CSV rows per class (train files and candidates together).
    fraction, seed : float, int
        The slice's fraction and seed.
    compression : str
        Parquet codec.
    next_index : int
        The surplus goes to train as ``part-<next_index>.parquet``.
    """
    quotas = select_quotas(class_counts, fraction, seed)
    candidates = read_files(parquet_files(candidates_dir))
    labels = candidates.column("label").to_numpy()
    counts = dict(zip(*np.unique(labels, return_counts=True))) if labels.size else {}
    missing = shortfall({int(k): int(v) for k, v in counts.items()}, quotas)
    pulled = 0
    if missing:
        log.info("ingest select: %d classes have fewer candidates than their quota; taking %d rows from train",
                 len(missing), sum(missing.values()))
        extra = _pull(train_dir, missing, seed, compression)
        pulled = extra.num_rows
        candidates = pa.concat_tables([candidates, extra.cast(candidates.schema)])
    ids = candidates.column("row_id").to_numpy()
    chosen = choose_select(ids, candidates.column("label").to_numpy(), hash_uniform_ids(ids, seed), quotas)
    selected = candidates.filter(pa.array(chosen)).sort_by("row_id")
    surplus = candidates.filter(pa.array(~chosen)).sort_by("row_id")
    fs.makedirs(select_dir)
    if selected.num_rows:
        write_file(selected, fs.join(select_dir, part_name(0)), compression)
    if surplus.num_rows:
        write_file(surplus, fs.join(train_dir, part_name(next_index)), compression)
    fs.delete(candidates_dir)
    return SelectResult(rows=selected.num_rows, surplus=surplus.num_rows, pulled=pulled,
                        quotas={c: q for c, q in quotas.items() if q})


def count_labels(table: pa.Table) -> dict[int, int]:
    """Rows per label of a table."""
    if not table.num_rows:
        return {}
    counts = pc.value_counts(table.column("label")).to_pylist()
    return {int(c["values"]): int(c["counts"]) for c in counts}


def select_plan(staging: str, source_bytes: int, line_bytes: float, classes: int, fraction: float,
                seed: int) -> SelectPlan:
    """Where the train tasks put candidates, and the threshold for a file of this size.

    The rows a class is expected to have come from the file's size, the mean length of its first lines
    and K; a ``.gz`` file's compressed size underestimates them, which only raises the threshold.
    """
    rows_per_class = source_bytes / max(line_bytes, 1.0) / max(classes, 1)
    return SelectPlan(fs.join(staging, CANDIDATES_DIR), candidate_threshold(fraction, rows_per_class), seed)


def finish_select(staging: str, train: SplitResult, plan: SelectPlan, fraction: float,
                  compression: str) -> SplitResult:
    """Carve ``split=select`` out of the train split's candidates; returns its result, updates ``train``."""
    started = time.time()
    done = carve_select(split_path(staging, SELECT_SOURCE), plan.candidates, split_path(staging, "select"),
                        train.class_counts, fraction, plan.seed, compression, train.next_index)
    train.rows_written -= done.rows
    train.rows_selected = done.rows
    log.info("ingest select: %d rows of %d classes (fraction %g, seed %d; %d candidates back to train, "
             "%d rows pulled from train) in %.1f s", done.rows, len(done.quotas), fraction, plan.seed,
             done.surplus, done.pulled, time.time() - started)
    extra = {"carved_from": SELECT_SOURCE, "fraction": fraction, "seed": plan.seed,
             "candidate_threshold": round(plan.threshold, 6), "classes": len(done.quotas)}
    return SplitResult("select", train.source, train.source_bytes, done.rows, done.rows, 0, {},
                       time.time() - started, extra=extra)
