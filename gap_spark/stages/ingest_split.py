"""Ingest of one split, the Spark side: read the lines, parse and write them in the workers, quarantine.

1. Spark reads the file as text lines (``.gz`` included, CRLF handled) and tags each line with its position.
2. ``mapInArrow`` hands batches of lines to :class:`~gap_spark.ops.csv_lines.LineParser`; each partition
   writes its good rows as one Parquet file with pyarrow. Bad rows are reported, with their position
   and reason, in the one row each partition returns (only a successful attempt's row is collected, so
   nothing is counted twice; no accumulator, which Spark Connect does not have).
3. Rows whose ``row_id`` or ``path`` is not unique within the split are all quarantined: there is no
   telling which copy is right.
4. Raw lines of the bad rows go to ``_quarantine/split=<split>``, with their source and reason.
"""
from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from gap_spark.contracts.dataset import SplitResult, quarantine_path, split_path
from gap_spark.contracts.dataset_parts import split_parts
from gap_spark.core import fs
from gap_spark.core.errors import IngestError
from gap_spark.core.session import default_parallelism, job_description
from gap_spark.ops.csv_lines import LineParser, count_by_kind
from gap_spark.ops.row_keys import extract_keys
from gap_spark.stages.ingest_duplicates import add_counts, drop_duplicates, duplicate_rows
from gap_spark.stages.ingest_parts import PartSink, remove_temporary_files
from gap_spark.stages.ingest_preflight import FileCheck
from gap_spark.stages.ingest_select import SelectPlan

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from gap_spark.core.settings import IngestSettings

__all__ = ["PART_SCHEMA", "SplitJob", "bad_fraction_message", "ingest_split", "read_lines", "write_parsed_parts"]

log = logging.getLogger(__name__)

# Per partition, at most this many bad rows are kept with their reason; the rest are only counted.
MAX_BAD_KEPT_PER_PARTITION = 20_000
# ``report``: the partition's counts as JSON (lines, bad rows kept with reasons, rows per class ...).
PART_SCHEMA = "partition int, rows long, file string, report string"
_PART_ARROW = pa.schema([("partition", pa.int32()), ("rows", pa.int64()), ("file", pa.string()),
                         ("report", pa.string())])


def _parse_batches(batches: Iterable[pa.RecordBatch], parser: LineParser, batch_rows: int,
                   report: dict[str, Any]) -> Iterator[pa.RecordBatch]:
    """Good rows of one partition's line batches; counts lines and bad rows into ``report``."""
    kept: list[tuple[int, str, str]] = report["bad"]
    for batch in batches:
        for start in range(0, batch.num_rows, batch_rows):
            part = batch.slice(start, batch_rows)
            result = parser.parse(part.column("pos"), part.column("value"))
            report["lines"] += result.lines
            report["last_pos"] = max(report["last_pos"], pc.max(part.column("pos")).as_py())
            room = max(MAX_BAD_KEPT_PER_PARTITION - len(kept), 0)
            kept.extend((b.pos, b.kind, b.reason) for b in result.bad[:room])
            report["bad_not_kept"] += max(0, len(result.bad) - room)
            yield from result.good


def _task_ids() -> tuple[int, int]:
    from pyspark import TaskContext

    context = TaskContext.get()
    return (context.partitionId(), context.attemptNumber()) if context else (-1, 0)


def write_parsed_parts(lines_df: "DataFrame", dim: int, classes: int, header: str, batch_rows: int,
                       out_uri: str, compression: str, select: SelectPlan | None = None) -> "DataFrame":
    """Parse each partition and write its good rows as one Parquet file, ``part-<partition>.parquet``.

    The Python worker writes the file with pyarrow (:class:`~gap_spark.stages.ingest_parts.PartSink`),
    so the 4 KB feature arrays never cross back into the JVM. With ``select``, the rows that may go to
    the selection split are written to a candidate file instead. Returns one ``(partition, rows, file,
    report)`` row a partition, ``report`` the JSON of its counts (lines, bad rows, rows per class, files);
    the files are written when an action runs.
    """
    parser = LineParser(dim, classes, header)

    def write_partition(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        partition, attempt = _task_ids()
        sink = PartSink(out_uri, partition, attempt, compression, classes,
                        *((select.candidates, select.threshold, select.seed) if select else ()))
        report: dict[str, Any] = {"lines": 0, "bad": [], "bad_not_kept": 0, "last_pos": -1}
        for batch in _parse_batches(batches, parser, batch_rows, report):
            sink.add(batch)
        written = sink.close()
        yield pa.RecordBatch.from_pylist([{"partition": partition, "rows": written["rows"], "file": written["file"],
                                           "report": json.dumps({**report, **written})}], schema=_PART_ARROW)

    return lines_df.mapInArrow(write_partition, PART_SCHEMA)


def read_lines(spark: "SparkSession", uri: str, min_partitions: int) -> "DataFrame":
    """The file's lines with a position that is the same on every read of the same file."""
    from pyspark.sql import functions as F

    lines = spark.read.text(fs.to_spark_uri(uri))
    if uri.endswith(".gz") and min_partitions > 1:
        # gzip cannot be split: number the lines in the single read task, then spread the parsing.
        numbered = lines.select(F.monotonically_increasing_id().alias("pos"), "value")
        return numbered.repartition(min_partitions)
    return lines.select(F.monotonically_increasing_id().alias("pos"), "value")


@dataclass(frozen=True)
class SplitJob:
    """One CSV to ingest: its split, source, preflight findings, D, and where its output goes."""

    split: str
    source: str
    check: FileCheck
    dim: int
    staging: str
    data_dir: str
    select: SelectPlan | None = None


def _round_up(x: float, digits: int = 2) -> float:
    """``x`` rounded up to ``digits`` significant digits."""
    scale = 10 ** (digits - 1 - math.floor(math.log10(x)))
    return math.ceil(x * scale - 1e-9) / scale


def bad_fraction_message(job: SplitJob, bad: int, rows_read: int, limit: float, by_kind: dict[str, int],
                         example: str | None) -> str:
    """What was exceeded (count, fraction, limit) and how to proceed, in one line."""
    fraction = bad / rows_read
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])[:4])
    seen = f"; for example {example}" if example else ""
    return (f"{job.split} CSV {job.source}: {bad:,} of {rows_read:,} rows are bad ({fraction:.2%}), more than the "
            f"limit of {limit:.2%} (--max-bad-fraction, ingest.max_bad_fraction {limit:g}): {kinds}{seen}. To "
            f"ingest the good rows, run again with --max-bad-fraction {_round_up(fraction):g} or more; the bad "
            f"rows then go to {quarantine_path(job.data_dir, job.split)} with their raw lines and reasons")


def _check_fraction(job: SplitJob, quarantined: int, rows_read: int, limit: float, by_kind: dict[str, int],
                    bad_rows: list[tuple[int, str, str]]) -> None:
    if rows_read and quarantined / rows_read > limit:
        example = bad_rows[0][2] if bad_rows else None
        raise IngestError(bad_fraction_message(job, quarantined, rows_read, limit, by_kind, example))


def ingest_split(spark: "SparkSession", job: SplitJob, settings: "IngestSettings") -> SplitResult:
    """Parse, validate and write one split into ``job.staging``; bad rows go to its ``_quarantine``.

    With ``job.select``, the rows that may join the selection split are in its candidates afterwards
    (and counted in ``rows_written``); :func:`~gap_spark.stages.ingest_select.finish_select` finishes it.
    """
    started = time.time()
    source_bytes = fs.size(job.source)
    # Parquet holds ~4 bytes a feature against ~11 in the CSV: aim each file at target_file_mb.
    # The setting stays for the whole split, so every scan of the file numbers its lines the same way.
    text_bytes_per_file = int(settings.target_file_mb) * (1 << 20) * 11 // 4
    previous = spark.conf.get("spark.sql.files.maxPartitionBytes")
    spark.conf.set("spark.sql.files.maxPartitionBytes", str(max(text_bytes_per_file, 1 << 20)))
    try:
        result = _ingest_split(spark, job, settings)
    finally:
        if previous is None:
            spark.conf.unset("spark.sql.files.maxPartitionBytes")
        else:
            spark.conf.set("spark.sql.files.maxPartitionBytes", previous)
    seconds = time.time() - started
    log.info("ingest %s: %d rows read, %d written, %d quarantined in %.1f s (%.1f MB/s of CSV)",
             job.split, result["rows_read"], result["rows_written"], result["quarantined"], seconds,
             source_bytes / 1e6 / max(seconds, 1e-9))
    return SplitResult(job.split, job.source, source_bytes, result["rows_read"], result["rows_written"],
                       result["quarantined"], result["by_kind"], seconds, class_counts=result["class_counts"],
                       next_index=result["next_index"])


def _ingest_split(spark: "SparkSession", job: SplitJob, settings: "IngestSettings") -> dict[str, Any]:
    """The split's counts: rows read, written and quarantined, quarantined by kind, rows per class."""
    lines = read_lines(spark, job.source, default_parallelism(spark))
    out = split_path(job.staging, job.split)
    dirs = [out, job.select.candidates] if job.select else [out]
    with job_description(spark, f"ingest {job.split}: parse, validate and write"):
        report = _write_good_rows(spark, lines, out, job, settings)
    bad_rows, bad_not_kept = report["bad"], report["bad_not_kept"]
    by_kind = count_by_kind(bad_rows, bad_not_kept)
    limit = settings.max_bad_fraction
    _check_fraction(job, len(bad_rows) + bad_not_kept, report["lines"], limit, by_kind, bad_rows)
    quarantine_parts: list[DataFrame] = []
    with job_description(spark, f"ingest {job.split}: duplicate check"):
        duplicates = duplicate_rows(spark, dirs)
        n_duplicates = duplicates.count() if duplicates is not None else 0
        quarantined = len(bad_rows) + bad_not_kept + n_duplicates
        _check_fraction(job, quarantined, report["lines"], limit, {**by_kind, "duplicates": n_duplicates}, bad_rows)
        if duplicates is not None and n_duplicates:
            log.warning("ingest %s: %d rows share a row_id or path; all copies go to quarantine", job.split,
                        n_duplicates)
            dup_rows = duplicates.collect()
            removed = drop_duplicates(dup_rows, dirs, by_kind, settings.compression)
            report["class_counts"] = add_counts(report["class_counts"], removed, -1)
            quarantine_parts.append(_duplicate_lines(spark, lines, dup_rows))
    if bad_rows:
        quarantine_parts.append(_bad_lines(spark, lines, bad_rows))
    if quarantine_parts:
        with job_description(spark, f"ingest {job.split}: quarantine"):
            _write_quarantine(quarantine_parts, job.source, quarantine_path(job.staging, job.split))
    rows_written = sum(p["rows"] for d in dirs for p in split_parts(d))
    if report["lines"] != rows_written + quarantined:
        raise RuntimeError(f"ingest {job.split}: {report['lines']} rows read but {rows_written} written and "
                           f"{quarantined} quarantined; this is a bug")
    return {"rows_read": report["lines"], "rows_written": rows_written, "quarantined": quarantined,
            "by_kind": by_kind, "class_counts": report["class_counts"], "next_index": report["next_index"]}


def _mark_truncated(bad_rows: list[tuple[int, str, str]], last_pos: int) -> list[tuple[int, str, str]]:
    """The file ends without a newline: a bad last row was cut short; say so in its reason."""
    return [(pos, "truncated", f"the last row is cut short (the file ends without a newline): {reason}")
            if pos == last_pos else (pos, kind, reason) for pos, kind, reason in bad_rows]


def _write_good_rows(spark: "SparkSession", lines: "DataFrame", out: str, job: SplitJob,
                     settings: "IngestSettings") -> dict[str, Any]:
    """Parse and write the good rows into ``out`` (and the candidates); returns the partitions' reports
    summed: ``lines``, ``bad`` (kept with reasons), ``bad_not_kept``, ``class_counts``, ``next_index``."""
    parts = write_parsed_parts(lines, job.dim, settings.classes, job.check.header, settings.batch_rows,
                               out, settings.compression, job.select).collect()
    fs.makedirs(out)  # no good rows at all: an empty split still reads as an empty frame
    for directory in [out, job.select.candidates] if job.select else [out]:
        remove_temporary_files(directory)
    report = {p["partition"]: json.loads(p["report"]) for p in parts}
    class_counts: dict[int, int] = {}
    for r in report.values():
        class_counts = add_counts(class_counts, {int(k): v for k, v in r["class_counts"].items()})
    bad = [(int(pos), kind, reason) for r in report.values() for pos, kind, reason in r["bad"]]
    if not job.check.ends_with_newline:
        bad = _mark_truncated(bad, max(r["last_pos"] for r in report.values()))
    return {"lines": sum(r["lines"] for r in report.values()), "bad": bad,
            "bad_not_kept": sum(r["bad_not_kept"] for r in report.values()),
            "class_counts": class_counts, "next_index": max((p["partition"] for p in parts), default=-1) + 1}


def _duplicate_lines(spark: "SparkSession", lines: "DataFrame", dup_rows: list[Any]) -> "DataFrame":
    """``pos, raw, kind, reason`` of the raw lines of the duplicated rows."""
    from pyspark.sql import functions as F

    dup_keys = spark.createDataFrame([(r["row_id"], r["path"], r["kind"]) for r in dup_rows],
                                     "row_id long, path string, kind string").distinct()
    keys = extract_keys(lines).join(F.broadcast(dup_keys), ["row_id", "path"])
    return keys.select("pos", F.col("value").alias("raw"), "kind", F.regexp_replace("kind", "_", " ").alias("reason"))


def _bad_lines(spark: "SparkSession", lines: "DataFrame", bad_rows: list[tuple[int, str, str]]) -> "DataFrame":
    """``pos, raw, kind, reason`` of the bad rows the parser reported."""
    from pyspark.sql import functions as F

    bad_df = spark.createDataFrame(bad_rows, "pos long, kind string, reason string")
    raw = lines.join(F.broadcast(bad_df), "pos")
    return raw.select("pos", F.col("value").alias("raw"), "kind", "reason")


def _write_quarantine(parts: list["DataFrame"], source: str, out: str) -> None:
    from pyspark.sql import functions as F

    frame = parts[0]
    for part in parts[1:]:
        frame = frame.unionByName(part)
    (frame.withColumn("source", F.lit(source)).orderBy("pos").coalesce(1)
     .write.mode("overwrite").parquet(fs.to_spark_uri(out)))
