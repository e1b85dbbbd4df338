"""Ingest of one split, the Spark side: read the lines, parse and write them in the workers, quarantine.

1. Spark reads the file as text lines (``.gz`` included, CRLF handled) and tags each line with its position.
2. ``mapInArrow`` hands batches of lines to :class:`~gap_spark.ops.csv_lines.LineParser`; each partition
   writes its good rows as one Parquet file with pyarrow. Bad rows are reported, with their position
   and reason, through an accumulator keyed by partition (a retried task overwrites its own entry, so
   nothing is counted twice).
3. Rows whose ``row_id`` or ``path`` is not unique within the split are all quarantined: there is no
   telling which copy is right.
4. Raw lines of the bad rows go to ``_quarantine/split=<split>``, with their source and reason.
"""
from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from gap_spark.contracts.dataset import SplitResult, quarantine_path, split_path
from gap_spark.core import fs
from gap_spark.core.errors import IngestError
from gap_spark.core.session import job_description
from gap_spark.ops.csv_lines import LineParser, count_by_kind, output_arrow_schema
from gap_spark.ops.row_keys import extract_keys, find_duplicates

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from gap_spark.core.settings import IngestSettings

__all__ = ["PART_SCHEMA", "ingest_split", "read_lines", "sample_check", "write_parsed_parts"]

log = logging.getLogger(__name__)

# Per partition, at most this many bad rows are kept with their reason; the rest are only counted.
MAX_BAD_KEPT_PER_PARTITION = 20_000
# Ingest gives up early when a sample of the first lines is mostly bad.
SAMPLE_LINES = 200
PART_SCHEMA = "partition int, rows long, file string"


def _accumulator_param() -> Any:
    from pyspark.accumulators import AccumulatorParam

    class PartitionReports(AccumulatorParam):
        """Maps partition id -> (lines, bad rows); a retried task replaces its own entry."""

        def zero(self, value: dict) -> dict:
            return {}

        def addInPlace(self, a: dict, b: dict) -> dict:
            a.update(b)
            return a

    return PartitionReports()


def _parse_batches(batches: Iterable[pa.RecordBatch], parser: LineParser, batch_rows: int, reports: Any,
                   partition: int) -> Iterator[pa.RecordBatch]:
    """Good rows of one partition's line batches; at the end, its report goes to the accumulator."""
    lines_seen, dropped = 0, 0
    kept: list[tuple[int, str, str]] = []
    for batch in batches:
        for start in range(0, batch.num_rows, batch_rows):
            part = batch.slice(start, batch_rows)
            result = parser.parse(part.column("pos"), part.column("value"))
            lines_seen += result.lines
            room = max(MAX_BAD_KEPT_PER_PARTITION - len(kept), 0)
            kept.extend((b.pos, b.kind, b.reason) for b in result.bad[:room])
            dropped += max(0, len(result.bad) - room)
            yield from result.good
    reports.add({partition: {"lines": lines_seen, "bad": kept, "bad_not_kept": dropped}})


def _task_ids() -> tuple[int, int]:
    from pyspark import TaskContext

    context = TaskContext.get()
    return (context.partitionId(), context.attemptNumber()) if context else (-1, 0)


def write_parsed_parts(lines_df: "DataFrame", dim: int, classes: int, header: str, batch_rows: int, reports: Any,
                       out_uri: str, compression: str, row_group_rows: int = 16_384) -> "DataFrame":
    """Parse each partition and write its good rows as one Parquet file, ``part-<partition>.parquet``.

    The Python worker writes the file with pyarrow, so the 4 KB feature arrays never cross back into
    the JVM: that round trip and Spark's row-wise array writer cost more than parsing. A file's name
    depends only on its partition and is written under a temporary name, then renamed, so a retried or
    speculative task replaces it with the same content. Returns one ``(partition, rows, file)`` row a
    partition; the files are written when an action runs.
    """
    import pyarrow.parquet as pq

    parser = LineParser(dim, classes, header)
    schema = output_arrow_schema()

    def write_partition(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        partition, attempt = _task_ids()
        filesystem, base = fs.resolve(out_uri)
        final = f"{base}/part-{partition:05d}.parquet"
        tmp = f"{base}/_tmp-part-{partition:05d}-{attempt}-{uuid.uuid4().hex[:6]}.parquet"
        writer, pending_rows, rows = None, 0, 0
        pending: list[pa.RecordBatch] = []

        def flush() -> None:
            nonlocal writer, pending, pending_rows
            if not pending:
                return
            if writer is None:
                filesystem.create_dir(base, recursive=True)
                writer = pq.ParquetWriter(filesystem.open_output_stream(tmp), schema, compression=compression)
            writer.write_table(pa.Table.from_batches(pending, schema=schema))
            pending, pending_rows = [], 0

        for batch in _parse_batches(batches, parser, batch_rows, reports, partition):
            pending.append(batch)
            pending_rows += batch.num_rows
            rows += batch.num_rows
            if pending_rows >= row_group_rows:
                flush()
        flush()
        name = None
        if writer is not None:
            writer.close()
            filesystem.move(tmp, final)
            name = final.rsplit("/", 1)[1]
        yield pa.RecordBatch.from_pylist([{"partition": partition, "rows": rows, "file": name}],
                                         schema=pa.schema([("partition", pa.int32()), ("rows", pa.int64()),
                                                           ("file", pa.string())]))

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


def sample_check(source: str, header: str, dim: int, classes: int, max_bad_fraction: float) -> None:
    """Fail in seconds, not hours, when the first lines are mostly bad."""
    lines = []
    for i, line in enumerate(fs.open_text_lines(source)):
        if i == 0:
            continue
        lines.append(line)
        if len(lines) >= SAMPLE_LINES:
            break
    if not lines:
        return
    parser = LineParser(dim, classes, header)
    result = parser.parse(pa.array(range(len(lines)), pa.int64()), pa.array(lines, pa.string()))
    fraction = len(result.bad) / len(lines)
    if fraction > max(0.5, max_bad_fraction):
        kinds = sorted({b.reason for b in result.bad})[:3]
        raise IngestError(f"{source}: {len(result.bad)} of the first {len(lines)} rows are bad "
                          f"({'; '.join(kinds)}): the file is probably not in the expected format")


def _check_fraction(source: str, quarantined: int, rows_read: int, max_bad: float, by_kind: dict[str, int]) -> None:
    if rows_read and quarantined / rows_read > max_bad:
        top = ", ".join(f"{k}: {v}" for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])[:4])
        raise IngestError(
            f"{source}: {quarantined} of {rows_read} rows are bad ({quarantined / rows_read:.2%}, above "
            f"max_bad_fraction {max_bad}; {top}): the file is probably not in the expected format")


def ingest_split(spark: "SparkSession", split: str, source: str, header: str, dim: int, classes: int,
                 staging: str, settings: "IngestSettings") -> SplitResult:
    """Parse, validate and write one split into ``staging``; bad rows go to ``staging/_quarantine``."""
    started = time.time()
    source_bytes = fs.size(source)
    sample_check(source, header, dim, classes, settings.max_bad_fraction)
    # Parquet holds ~4 bytes a feature against ~11 in the CSV: aim each file at target_file_mb.
    # The setting stays for the whole split, so every scan of the file numbers its lines the same way.
    text_bytes_per_file = int(settings.target_file_mb) * (1 << 20) * 11 // 4
    previous = spark.conf.get("spark.sql.files.maxPartitionBytes")
    spark.conf.set("spark.sql.files.maxPartitionBytes", str(max(text_bytes_per_file, 1 << 20)))
    try:
        result = _ingest_split(spark, split, source, header, dim, classes, staging, settings)
    finally:
        if previous is None:
            spark.conf.unset("spark.sql.files.maxPartitionBytes")
        else:
            spark.conf.set("spark.sql.files.maxPartitionBytes", previous)
    seconds = time.time() - started
    log.info("ingest %s: %d rows read, %d written, %d quarantined in %.1f s (%.1f MB/s of CSV, %d files)",
             split, result["rows_read"], result["rows_written"], result["quarantined"], seconds,
             source_bytes / 1e6 / max(seconds, 1e-9), result["files"])
    return SplitResult(split, source, source_bytes, result["rows_read"], result["rows_written"],
                       result["quarantined"], result["by_kind"], seconds, result["files"])


def _ingest_split(spark: "SparkSession", split: str, source: str, header: str, dim: int, classes: int,
                  staging: str, settings: "IngestSettings") -> dict[str, Any]:
    """The split's counts: rows read, written and quarantined, quarantined by kind, and files."""
    lines = read_lines(spark, source, spark.sparkContext.defaultParallelism)
    out = split_path(staging, split)
    with job_description(spark, f"ingest {split}: parse, validate and write"):
        rows_read, bad_rows, bad_not_kept = _write_good_rows(spark, lines, out, dim, classes, header, settings)
    by_kind = count_by_kind(bad_rows, bad_not_kept)
    _check_fraction(source, len(bad_rows) + bad_not_kept, rows_read, settings.max_bad_fraction, by_kind)
    quarantine_parts: list[DataFrame] = []
    with job_description(spark, f"ingest {split}: duplicate check"):
        duplicates = find_duplicates(spark.read.parquet(fs.to_spark_uri(out)))
        n_duplicates = duplicates.count()
        quarantined = len(bad_rows) + bad_not_kept + n_duplicates
        _check_fraction(source, quarantined, rows_read, settings.max_bad_fraction, by_kind)
        if n_duplicates:
            log.warning("ingest %s: %d rows share a row_id or path; all copies go to quarantine", split,
                        n_duplicates)
            quarantine_parts.append(_drop_duplicates(spark, lines, duplicates, by_kind, staging, split, settings))
        if bad_rows:
            quarantine_parts.append(_bad_lines(spark, lines, bad_rows))
        rows_written = spark.read.parquet(fs.to_spark_uri(out)).count()
    if quarantine_parts:
        with job_description(spark, f"ingest {split}: quarantine"):
            _write_quarantine(quarantine_parts, source, quarantine_path(staging, split))
    if rows_read != rows_written + quarantined:
        raise RuntimeError(f"ingest {split}: {rows_read} rows read but {rows_written} written and "
                           f"{quarantined} quarantined; this is a bug")
    files = sum(1 for name in fs.list_dir(out) if name.endswith(".parquet"))
    return {"rows_read": rows_read, "rows_written": rows_written, "quarantined": quarantined,
            "by_kind": by_kind, "files": files}


def _write_good_rows(spark: "SparkSession", lines: "DataFrame", out: str, dim: int, classes: int, header: str,
                     settings: "IngestSettings") -> tuple[int, list[tuple[int, str, str]], int]:
    """Parse and write the good rows into ``out``; returns the lines read, the bad rows kept with their
    reasons, and the number of bad rows only counted."""
    reports = spark.sparkContext.accumulator({}, _accumulator_param())
    parts = write_parsed_parts(lines, dim, classes, header, settings.batch_rows, reports,
                               out, settings.compression).collect()
    if not any(p["file"] for p in parts):
        fs.makedirs(out)  # no good rows at all: an empty split still reads as an empty frame
    for name in fs.list_dir(out):
        if name.startswith("_tmp-"):  # left by task attempts that died mid-write (lost executor)
            fs.delete(fs.join(out, name))
    report = reports.value
    rows_read = sum(r["lines"] for r in report.values())
    bad_rows = [b for r in report.values() for b in r["bad"]]
    bad_not_kept = sum(r["bad_not_kept"] for r in report.values())
    return rows_read, bad_rows, bad_not_kept


def _drop_duplicates(spark: "SparkSession", lines: "DataFrame", duplicates: "DataFrame", by_kind: dict[str, int],
                     staging: str, split: str, settings: "IngestSettings") -> "DataFrame":
    """Rewrite the split without the duplicated rows; returns their raw lines for the quarantine.

    Counts the duplicates per kind into ``by_kind``.
    """
    from pyspark.sql import functions as F

    out = split_path(staging, split)
    # Few rows by now (the fraction check passed): keep them on the driver, not tied to files we replace.
    dup_keys = spark.createDataFrame(duplicates.collect(), "row_id long, path string, kind string")
    for row in dup_keys.groupBy("kind").count().collect():
        by_kind[row["kind"]] = int(row["count"])
    keys = extract_keys(lines).join(F.broadcast(dup_keys), ["row_id", "path"])
    quarantined = keys.select("pos", F.col("value").alias("raw"), "kind",
                              F.regexp_replace("kind", "_", " ").alias("reason"))
    written = spark.read.parquet(fs.to_spark_uri(out))
    kept = written.join(F.broadcast(dup_keys.select("row_id", "path")), ["row_id", "path"], "left_anti")
    rewrite = fs.join(staging, f"_rewrite_{split}")
    kept.write.mode("overwrite").option("compression", settings.compression).parquet(fs.to_spark_uri(rewrite))
    fs.delete(out)
    fs.move(rewrite, out)
    return quarantined


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
