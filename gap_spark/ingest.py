"""Ingest: validate the three EVA-02 CSVs and write the partitioned Parquet dataset.

How one split is read
---------------------
1. The driver reads the header line itself and checks it: an empty index name, ``path``, ``label``, then
   ``0``..``D-1`` with the same D in every file. Spark never infers types over 1027 columns.
2. Spark reads the file as text lines (``.gz`` included, CRLF handled) and tags each line with its position.
3. ``mapInArrow`` hands batches of lines to :func:`parse_lines`, which parses them with pyarrow's C++ CSV
   reader against the explicit schema. A batch that fails to convert is bisected until the bad lines are
   isolated, so one bad row costs ``log2(batch)`` small re-parses, not a Python loop over the batch.
4. Good rows come back as ``row_id, path, label, features array<float>`` and are written to a staging
   directory. Bad rows are reported, with their position and reason, through an accumulator keyed by
   partition (a retried task overwrites its own entry, so nothing is counted twice).
5. Rows whose ``row_id`` or ``path`` is not unique within the split are all quarantined: there is no
   telling which copy is right.
6. Raw lines of the bad rows go to ``_quarantine/``; the manifest is written last, after the staging
   directory has replaced the dataset, so a crash at any point leaves no manifest and readers refuse.
"""
from __future__ import annotations

import csv
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from gap_spark.contracts.dataset import (
    MANIFEST,
    MANIFEST_VERSION,
    QUARANTINE,
    SPLITS,
    dataset_schema,
    fingerprint,
    manifest_path,
    resolve_sources,
    split_path,
)
from gap_spark.core import fs
from gap_spark.core.errors import IngestError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from gap_spark.contracts.paths import Paths
    from gap_spark.core.config import Config

log = logging.getLogger(__name__)

INDEX, PATH, LABEL = "", "path", "label"
# Parsed columns: _pos, _idx, path, label, then the features.
FIRST_FEATURE = 4
# Per partition, at most this many bad rows are kept with their reason; the rest are only counted.
MAX_BAD_KEPT_PER_PARTITION = 20_000
# Ingest gives up early when a sample of the first lines is mostly bad.
SAMPLE_LINES = 200


# --------------------------------------------------------------------------- header


def validate_header(line: str, source: str) -> int:
    """Check a pandas-written header and return the feature dimension D.

    Raises
    ------
    IngestError
        Naming ``source`` and the first problem found.
    """
    if not line:
        raise IngestError(f"{source}: the file is empty (no header line)")
    names = next(csv.reader([line]))
    if len(names) < 4:
        raise IngestError(f"{source}: header has {len(names)} columns; expected ',path,label,0,1,...' "
                          "(index, path, label and at least one feature)")
    if names[0] != INDEX:
        raise IngestError(f"{source}: the first header column must be empty (pandas' index), got '{names[0]}'")
    if names[1] != PATH or names[2] != LABEL:
        raise IngestError(f"{source}: header must continue with 'path,label', got '{names[1]},{names[2]}'")
    for position, name in enumerate(names[3:]):
        if name != str(position):
            raise IngestError(f"{source}: feature columns must be named 0..D-1 in order; "
                              f"column {position + 3} is '{name}', expected '{position}'")
    return len(names) - 3


# --------------------------------------------------------------------------- parsing


@dataclass
class BadRow:
    pos: int
    kind: str
    reason: str


@dataclass
class ParseResult:
    good: list[pa.RecordBatch]
    bad: list[BadRow] = field(default_factory=list)
    lines: int = 0


def output_arrow_schema() -> pa.Schema:
    return pa.schema([
        pa.field("row_id", pa.int64(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("label", pa.int32(), nullable=False),
        pa.field("features", pa.list_(pa.field("element", pa.float32(), nullable=False)), nullable=False),
    ])


def _csv_options(dim: int, block: int):
    names = ["_pos", "_idx", PATH, LABEL] + [str(j) for j in range(dim)]
    types = {"_pos": pa.int64(), "_idx": pa.int64(), PATH: pa.string(), LABEL: pa.int64()}
    types.update({str(j): pa.float32() for j in range(dim)})
    read = pacsv.ReadOptions(column_names=names, use_threads=False, block_size=max(block, 1 << 20))
    convert = pacsv.ConvertOptions(column_types=types, null_values=[""], strings_can_be_null=False,
                                   quoted_strings_can_be_null=False)
    return read, convert


def classify_line(line: str, dim: int, classes: int) -> tuple[str, str] | None:
    """Why one CSV line is bad, as ``(kind, reason)``; None when Python finds nothing wrong with it."""
    try:
        fields = next(csv.reader([line]))
    except (csv.Error, StopIteration) as exc:
        return "parse", f"unparsable CSV line ({exc})"
    if len(fields) != dim + 3:
        return "field_count", f"wrong field count: expected {dim + 3}, got {len(fields)}"
    try:
        int(fields[0])
    except ValueError:
        return "row_id", f"row_id is not an integer: {fields[0][:40]!r}"
    label = fields[2].strip()
    if not label:
        return "label_type", "empty label"
    try:
        label_value = int(label)
    except ValueError:
        try:
            float(label)
            return "label_type", f"label is not an integer: {label[:40]!r}"
        except ValueError:
            return "label_type", f"label is not a number: {label[:40]!r}"
    for j, text in enumerate(fields[3:]):
        if text == "":
            return "empty_feature", f"empty feature in column '{j}'"
        try:
            value = float(text)
        except ValueError:
            return "unparsable", f"unparsable number in column '{j}': {text[:40]!r}"
        if not math.isfinite(value) or not math.isfinite(np.float32(value)):
            return "non_finite", f"non-finite feature in column '{j}': {text[:40]!r}"
    if not 0 <= label_value < classes:
        return "label_range", f"label {label_value} outside [0, {classes})"
    return None


class LineParser:
    """Turns CSV lines (with their positions) into dataset rows and reasons for the bad ones."""

    def __init__(self, dim: int, classes: int, header: str | None = None):
        self.dim = dim
        self.classes = classes
        self.header = header

    # -- fast path: pyarrow over a whole batch
    def _parse_block(self, pos: pa.Array, lines: pa.Array, bad: list[BadRow]) -> pa.Table:
        prefixed = pc.binary_join_element_wise(pc.cast(pos, pa.string()), lines, ",")
        joined = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(prefixed)], pa.int32()), prefixed), "\n")
        data = joined[0].as_buffer()
        read, convert = _csv_options(self.dim, data.size + 1)

        def on_invalid_row(row) -> str:
            text = row.text or ""
            head, _, _rest = text.partition(",")
            try:
                position = int(head)
            except ValueError:
                position = -1
            bad.append(BadRow(position, "field_count",
                              f"wrong field count: expected {self.dim + 3}, got {row.actual_columns - 1}"))
            return "skip"

        parse = pacsv.ParseOptions(invalid_row_handler=on_invalid_row)
        return pacsv.read_csv(pa.BufferReader(data), read_options=read, parse_options=parse,
                              convert_options=convert)

    def _parse_isolating(self, pos: pa.Array, lines: pa.Array, bad: list[BadRow]) -> list[pa.Table]:
        """Parse a batch; when conversion fails, bisect to isolate the lines that break it."""
        attempt: list[BadRow] = []
        try:
            table = self._parse_block(pos, lines, attempt)
        except pa.ArrowInvalid as exc:
            if len(lines) == 1:
                line = lines[0].as_py()
                found = classify_line(line, self.dim, self.classes)
                kind, reason = found if found else ("parse", f"unparsable row: {str(exc)[:160]}")
                bad.append(BadRow(pos[0].as_py(), kind, reason))
                return []
            half = len(lines) // 2
            return (self._parse_isolating(pos.slice(0, half), lines.slice(0, half), bad)
                    + self._parse_isolating(pos.slice(half), lines.slice(half), bad))
        bad.extend(attempt)
        return [table]

    # -- vectorised checks on parsed rows
    def _check(self, table: pa.Table, bad: list[BadRow]) -> pa.RecordBatch:
        n, dim = table.num_rows, self.dim
        positions = table.column("_pos").to_numpy()
        ok = np.ones(n, dtype=bool)
        reasons: dict[int, tuple[str, str]] = {}

        def flag(mask: np.ndarray, make: Callable[[int], tuple[str, str]]) -> None:
            for i in np.flatnonzero(mask & ok):
                reasons[i] = make(i)
            ok[mask] = False

        idx = table.column("_idx")
        flag(idx.is_null().to_numpy(zero_copy_only=False), lambda i: ("row_id", "empty row_id"))
        label_col = table.column(LABEL)
        flag(label_col.is_null().to_numpy(zero_copy_only=False), lambda i: ("label_type", "empty label"))
        labels = label_col.fill_null(0).to_numpy()
        flag((labels < 0) | (labels >= self.classes),
             lambda i: ("label_range", f"label {int(labels[i])} outside [0, {self.classes})"))
        path_col = table.column(PATH)

        matrix = np.empty((n, dim), dtype=np.float32)
        for j in range(dim):
            matrix[:, j] = table.column(FIRST_FEATURE + j).to_numpy(zero_copy_only=False)
        finite = np.isfinite(matrix).all(axis=1)

        def feature_reason(i: int) -> tuple[str, str]:
            j = int(np.flatnonzero(~np.isfinite(matrix[i]))[0])
            if not table.column(FIRST_FEATURE + j)[i].is_valid:
                return "empty_feature", f"empty feature in column '{j}'"
            return "non_finite", f"non-finite feature in column '{j}': {matrix[i, j]}"

        flag(~finite, feature_reason)
        for i, (kind, reason) in sorted(reasons.items()):
            bad.append(BadRow(int(positions[i]), kind, reason))

        keep = pa.array(ok)
        kept = int(ok.sum())
        values = pa.array((matrix if kept == n else matrix[ok]).reshape(-1), type=pa.float32())
        offsets = pa.array(np.arange(0, (kept + 1) * dim, dim, dtype=np.int32))
        features = pa.ListArray.from_arrays(offsets, values,
                                            type=output_arrow_schema().field("features").type)
        return pa.RecordBatch.from_arrays(
            [pc.filter(idx, keep).combine_chunks(), pc.filter(path_col, keep).combine_chunks(),
             pc.cast(pc.filter(label_col, keep), pa.int32()).combine_chunks(), features],
            schema=output_arrow_schema())

    def parse(self, pos: pa.Array, lines: pa.Array) -> ParseResult:
        """Parse one batch of lines; header and blank lines are recognised, never parsed as data."""
        bad: list[BadRow] = []
        lines = lines.cast(pa.string())
        is_header = (pc.fill_null(pc.equal(lines, self.header), False) if self.header is not None
                     else pa.repeat(pa.scalar(False), len(lines)))
        stripped = pc.utf8_trim_whitespace(lines)
        is_blank = pc.and_(pc.equal(stripped, ""), pc.invert(is_header))
        for p in pc.filter(pos, is_blank).to_pylist():
            bad.append(BadRow(p, "blank", "blank line"))
        data_mask = pc.invert(pc.or_(is_header, is_blank))
        n_lines = len(lines) - pc.sum(pc.cast(is_header, pa.int64())).as_py()
        pos, lines = pc.filter(pos, data_mask), pc.filter(lines, data_mask)
        batches = []
        if len(lines):
            for table in self._parse_isolating(pos, lines, bad):
                if table.num_rows:
                    batches.append(self._check(table, bad))
        return ParseResult(batches, bad, n_lines)


# --------------------------------------------------------------------------- Spark side


def _accumulator_param():
    from pyspark.accumulators import AccumulatorParam

    class PartitionReports(AccumulatorParam):
        """Maps partition id -> (lines, bad rows); a retried task replaces its own entry."""

        def zero(self, value):
            return {}

        def addInPlace(self, a, b):
            a.update(b)
            return a

    return PartitionReports()


def _parse_batches(batches: Iterable[pa.RecordBatch], parser: LineParser, batch_rows: int, reports,
                   partition: int) -> Iterator[pa.RecordBatch]:
    """Good rows of one partition's line batches; at the end, its report goes to the accumulator."""
    lines_seen, kept, dropped = 0, [], 0
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


def _partition_id() -> int:
    from pyspark import TaskContext

    context = TaskContext.get()
    return context.partitionId() if context else -1


def parse_text_frame(lines_df: "DataFrame", dim: int, classes: int, header: str, batch_rows: int,
                     reports) -> "DataFrame":
    """``(pos long, value string)`` lines -> dataset rows; bad rows are reported to ``reports``."""
    from pyspark.sql import types as T

    parser = LineParser(dim, classes, header)

    def parse_partition(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        yield from _parse_batches(batches, parser, batch_rows, reports, _partition_id())

    schema = T.StructType([T.StructField(f.name, f.dataType, True) for f in dataset_schema().fields])
    return lines_df.mapInArrow(parse_partition, schema)


PART_SCHEMA = "partition int, rows long, file string"


def write_parsed_parts(lines_df: "DataFrame", dim: int, classes: int, header: str, batch_rows: int, reports,
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
        from pyspark import TaskContext

        partition = _partition_id()
        context = TaskContext.get()
        attempt = context.attemptNumber() if context else 0
        filesystem, base = fs.resolve(out_uri)
        final = f"{base}/part-{partition:05d}.parquet"
        tmp = f"{base}/_tmp-part-{partition:05d}-{attempt}-{uuid.uuid4().hex[:6]}.parquet"
        writer, pending, pending_rows, rows = None, [], 0, 0

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


def find_duplicates(good: "DataFrame") -> "DataFrame":
    """Rows whose ``row_id`` or ``path`` occurs more than once: ``(row_id, path, kind)``."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    by_id = F.count(F.lit(1)).over(Window.partitionBy("row_id"))
    by_path = F.count(F.lit(1)).over(Window.partitionBy("path"))
    keys = good.select("row_id", "path").withColumn("n_id", by_id).withColumn("n_path", by_path)
    return (keys.where((F.col("n_id") > 1) | (F.col("n_path") > 1))
            .select("row_id", "path",
                    F.when(F.col("n_id") > 1, F.lit("duplicate_row_id")).otherwise(F.lit("duplicate_path"))
                    .alias("kind")))


def extract_keys(lines_df: "DataFrame") -> "DataFrame":
    """``row_id`` and ``path`` of raw lines, in the JVM (no float parsing), for matching duplicates."""
    from pyspark.sql import functions as F

    first_two_fields = r'^([^,]*),("(?:[^"]|"")*"|[^,]*)'
    keys = lines_df.select("pos", "value",
                           F.regexp_extract("value", first_two_fields, 1).try_cast("long").alias("row_id"),
                           F.regexp_extract("value", first_two_fields, 2).alias("raw_path"))
    unquoted = F.regexp_replace(F.expr("substring(raw_path, 2, length(raw_path) - 2)"), '""', '"')
    return keys.select("pos", "value", "row_id",
                       F.when(F.col("raw_path").startswith('"'), unquoted).otherwise(F.col("raw_path")).alias("path"))


@dataclass
class SplitResult:
    split: str
    source: str
    source_bytes: int
    rows_read: int
    rows_written: int
    rows_quarantined: int
    quarantined_by_kind: dict
    seconds: float
    files: int

    def to_manifest(self, dim: int) -> dict:
        return {
            "source": self.source, "source_bytes": self.source_bytes,
            "rows_read": self.rows_read, "rows_written": self.rows_written,
            "rows_quarantined": self.rows_quarantined, "quarantined_by_reason": self.quarantined_by_kind,
            "files": self.files, "seconds": round(self.seconds, 3),
            "mb_per_s": round(self.source_bytes / 1e6 / max(self.seconds, 1e-9), 2),
        }


def _sample_check(source: str, header: str, dim: int, classes: int, max_bad_fraction: float) -> None:
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


def ingest_split(spark: "SparkSession", split: str, source: str, header: str, dim: int, classes: int,
                 staging: str, settings: dict) -> SplitResult:
    """Parse, validate and write one split into ``staging``; bad rows go to ``staging/_quarantine``."""
    started = time.time()
    source_bytes = fs.size(source)
    _sample_check(source, header, dim, classes, float(settings["max_bad_fraction"]))
    # Parquet holds ~4 bytes a feature against ~11 in the CSV: aim each file at target_file_mb.
    # The setting stays for the whole split, so every scan of the file numbers its lines the same way.
    text_bytes_per_file = int(settings["target_file_mb"]) * (1 << 20) * 11 // 4
    previous = spark.conf.get("spark.sql.files.maxPartitionBytes")
    spark.conf.set("spark.sql.files.maxPartitionBytes", str(max(text_bytes_per_file, 1 << 20)))
    try:
        return _ingest_split(spark, split, source, source_bytes, header, dim, classes, staging, settings, started)
    finally:
        spark.conf.set("spark.sql.files.maxPartitionBytes", previous)


def _ingest_split(spark: "SparkSession", split: str, source: str, source_bytes: int, header: str, dim: int,
                  classes: int, staging: str, settings: dict, started: float) -> SplitResult:
    from pyspark.sql import functions as F

    reports = spark.sparkContext.accumulator({}, _accumulator_param())
    lines = read_lines(spark, source, spark.sparkContext.defaultParallelism)
    out = split_path(staging, split)
    spark.sparkContext.setJobDescription(f"ingest {split}: parse, validate and write")
    parts = write_parsed_parts(lines, dim, classes, header, int(settings["batch_rows"]), reports,
                               out, settings["compression"]).collect()
    if not any(p["file"] for p in parts):
        fs.makedirs(out)  # no good rows at all: an empty split still reads as an empty frame
    for name in fs.list_dir(out):
        if name.startswith("_tmp-"):  # left by task attempts that died mid-write (lost executor)
            fs.delete(fs.join(out, name))

    report = reports.value
    rows_read = sum(r["lines"] for r in report.values())
    bad_rows = [b for r in report.values() for b in r["bad"]]
    bad_not_kept = sum(r["bad_not_kept"] for r in report.values())
    written = spark.read.parquet(fs.to_spark_uri(out))
    max_bad = float(settings["max_bad_fraction"])
    by_kind: dict[str, int] = {}
    for _, kind, _ in bad_rows:
        by_kind[kind] = by_kind.get(kind, 0) + 1
    if bad_not_kept:
        by_kind["not_kept"] = bad_not_kept

    def check_fraction(quarantined: int) -> None:
        if rows_read and quarantined / rows_read > max_bad:
            top = ", ".join(f"{k}: {v}" for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])[:4])
            raise IngestError(
                f"{source}: {quarantined} of {rows_read} rows are bad ({quarantined / rows_read:.2%}, above "
                f"max_bad_fraction {max_bad}; {top}): the file is probably not in the expected format")

    check_fraction(len(bad_rows) + bad_not_kept)
    spark.sparkContext.setJobDescription(f"ingest {split}: duplicate check")
    duplicates = find_duplicates(written)
    n_duplicates = duplicates.count()
    check_fraction(len(bad_rows) + bad_not_kept + n_duplicates)
    quarantine_parts: list["DataFrame"] = []
    if n_duplicates:
        log.warning("ingest %s: %d rows share a row_id or path; all copies go to quarantine", split, n_duplicates)
        # Few rows by now (the fraction check passed): keep them on the driver, not tied to files we replace.
        dup_keys = spark.createDataFrame(duplicates.collect(), "row_id long, path string, kind string")
        for row in dup_keys.groupBy("kind").count().collect():
            by_kind[row["kind"]] = int(row["count"])
        keys = extract_keys(lines).join(F.broadcast(dup_keys), ["row_id", "path"])
        quarantine_parts.append(keys.select("pos", F.col("value").alias("raw"), "kind",
                                            F.regexp_replace("kind", "_", " ").alias("reason")))
        kept = written.join(F.broadcast(dup_keys.select("row_id", "path")), ["row_id", "path"], "left_anti")
        rewrite = fs.join(staging, f"_rewrite_{split}")
        kept.write.mode("overwrite").option("compression", settings["compression"]).parquet(fs.to_spark_uri(rewrite))
        fs.delete(out)
        fs.move(rewrite, out)

    if bad_rows:
        bad_df = spark.createDataFrame(bad_rows, "pos long, kind string, reason string")
        raw = lines.join(F.broadcast(bad_df), "pos")
        quarantine_parts.append(raw.select("pos", F.col("value").alias("raw"), "kind", "reason"))
    quarantined = len(bad_rows) + bad_not_kept + n_duplicates
    rows_written = spark.read.parquet(fs.to_spark_uri(out)).count()

    if quarantine_parts:
        spark.sparkContext.setJobDescription(f"ingest {split}: quarantine")
        frame = quarantine_parts[0]
        for part in quarantine_parts[1:]:
            frame = frame.unionByName(part)
        (frame.withColumn("source", F.lit(source)).orderBy("pos").coalesce(1)
         .write.mode("overwrite").parquet(fs.to_spark_uri(fs.join(staging, QUARANTINE, f"split={split}"))))
    if rows_read != rows_written + quarantined:
        raise RuntimeError(f"ingest {split}: {rows_read} rows read but {rows_written} written and "
                           f"{quarantined} quarantined; this is a bug")
    seconds = time.time() - started
    files = sum(1 for name in fs.list_dir(out) if name.endswith(".parquet"))
    log.info("ingest %s: %d rows read, %d written, %d quarantined in %.1f s (%.1f MB/s of CSV, %d files)",
             split, rows_read, rows_written, quarantined, seconds, source_bytes / 1e6 / max(seconds, 1e-9), files)
    return SplitResult(split, source, source_bytes, rows_read, rows_written, quarantined, by_kind, seconds, files)


def _clean_stale_staging(data_dir: str) -> None:
    parent, name = data_dir.rstrip("/").rsplit("/", 1) if "/" in data_dir.rstrip("/") else (".", data_dir)
    if not fs.exists(parent):
        return
    for entry in fs.list_dir(parent):
        if entry.startswith(f"{name}.staging-"):
            log.info("ingest: removing staging left by an interrupted run: %s", entry)
            fs.delete(fs.join(parent, entry))


def run_ingest(spark: "SparkSession", config: "Config", paths: "Paths", train: str | None = None,
               val: str | None = None, v2: str | None = None) -> dict:
    """Stage entry point: CSVs -> ``paths.data`` (Parquet by split, quarantine, manifest)."""
    settings = config.section("ingest")
    classes = int(settings["classes"])
    if classes < 2:
        raise IngestError(f"ingest.classes must be at least 2, got {classes}")
    data_dir = paths.data.rstrip("/")
    started = time.time()
    sources = resolve_sources(paths.raw, train, val, v2)

    headers, dims = {}, {}
    for split, source in sources.items():
        headers[split] = fs.read_first_line(source)
        dims[split] = validate_header(headers[split], source)
    if len(set(dims.values())) != 1:
        raise IngestError("the files disagree on the feature dimension D: "
                          + ", ".join(f"{s} has {d}" for s, d in dims.items()))
    dim = dims["train"]

    _clean_stale_staging(data_dir)
    staging = f"{data_dir}.staging-{uuid.uuid4().hex[:8]}"
    fs.makedirs(staging)
    results: dict[str, SplitResult] = {}
    try:
        for split in SPLITS:
            log.info("ingest %s: %s (%.1f MB)", split, sources[split], fs.size(sources[split]) / 1e6)
            results[split] = ingest_split(spark, split, sources[split], headers[split], dim, classes, staging,
                                          settings)
    except BaseException:
        fs.delete(staging)
        raise
    finally:
        spark.sparkContext.setJobDescription(None)

    manifest = {
        "status": "complete",
        "version": MANIFEST_VERSION,
        "dim": dim,
        "classes": classes,
        "fingerprint": fingerprint(sources),
        "schema": dataset_schema().jsonValue(),
        "splits": {split: r.to_manifest(dim) for split, r in results.items()},
        "seconds": round(time.time() - started, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    # Commit: drop the old dataset's manifest first, swap directories, write the manifest last.
    if fs.exists(data_dir):
        fs.delete(manifest_path(data_dir))
        fs.delete(data_dir)
    fs.move(staging, data_dir)
    fs.write_json(manifest_path(data_dir), manifest)
    log.info("ingest: dataset complete at %s (%s)", data_dir, MANIFEST)
    return {"data": data_dir, "dim": dim, "classes": classes,
            "splits": {s: {k: v for k, v in m.items() if k in ("rows_read", "rows_written", "rows_quarantined",
                                                                  "mb_per_s")}
                       for s, m in manifest["splits"].items()},
            "seconds": manifest["seconds"]}
