"""The CSV-line parser behind ingest: pandas-written lines of the EVA-02 files -> dataset rows.

Pure pyarrow and numpy (no Spark, no I/O). :class:`LineParser` parses a batch of lines with pyarrow's
C++ CSV reader against an explicit schema; a batch that fails to convert is bisected until the bad
lines are isolated, so one bad row costs ``log2(batch)`` small re-parses, not a Python loop over the
batch. Good rows come back as ``row_id, path, label, features list<float>`` (:func:`output_arrow_schema`),
bad ones as :class:`BadRow` with their position, kind and reason.
"""
from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from gap_spark.core.errors import IngestError

__all__ = [
    "BOM", "LABEL", "PATH", "QUOTED_LINE_BREAK", "BadRow", "LineParser", "ParseResult", "classify_line",
    "count_by_kind", "output_arrow_schema", "validate_header",
]

INDEX, PATH, LABEL = "", "path", "label"
BOM = "\ufeff"
QUOTED_LINE_BREAK = "line break inside a quoted field"
# Parsed columns: _pos, _idx, path, label, then the features.
FIRST_FEATURE = 4


def validate_header(line: str, source: str) -> int:
    """Check a pandas-written header and return the feature dimension D.

    Parameters
    ----------
    line : str
        The file's first line, without its end of line.
    source : str
        The file's name, for messages.

    Returns
    -------
    int
        D: the header must read ``,path,label,0,1,...,D-1``.

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


@dataclass
class BadRow:
    """One bad line: its position in the file, the kind of problem (a manifest key) and a reason."""

    pos: int
    kind: str
    reason: str


@dataclass
class ParseResult:
    """What :meth:`LineParser.parse` makes of a batch: good rows, bad rows and data lines seen."""

    good: list[pa.RecordBatch]
    bad: list[BadRow] = field(default_factory=list)
    lines: int = 0


def output_arrow_schema() -> pa.Schema:
    """The Arrow schema of the good rows (the dataset contract's columns, none nullable).

    Returns
    -------
    pyarrow.Schema
        ``row_id int64, path string, label int32, features list<float32>``.
    """
    return pa.schema([
        pa.field("row_id", pa.int64(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("label", pa.int32(), nullable=False),
        pa.field("features", pa.list_(pa.field("element", pa.float32(), nullable=False)), nullable=False),
    ])


def count_by_kind(bad: list[tuple[int, str, str]], not_kept: int = 0) -> dict[str, int]:
    """Bad rows per kind, in the order each kind first occurs.

    Parameters
    ----------
    bad : list of (pos, kind, reason)
        The bad rows kept with their reason.
    not_kept : int
        Bad rows only counted; they appear as ``not_kept`` when there are any.

    Returns
    -------
    dict of str to int
    """
    by_kind: dict[str, int] = {}
    for _, kind, _ in bad:
        by_kind[kind] = by_kind.get(kind, 0) + 1
    if not_kept:
        by_kind["not_kept"] = not_kept
    return by_kind


def _csv_options(dim: int, block: int) -> tuple[pacsv.ReadOptions, pacsv.ConvertOptions]:
    names = ["_pos", "_idx", PATH, LABEL] + [str(j) for j in range(dim)]
    types = {"_pos": pa.int64(), "_idx": pa.int64(), PATH: pa.string(), LABEL: pa.int64()}
    types.update({str(j): pa.float32() for j in range(dim)})
    read = pacsv.ReadOptions(column_names=names, use_threads=False, block_size=max(block, 1 << 20))
    convert = pacsv.ConvertOptions(column_types=types, null_values=[""], strings_can_be_null=False,
                                   quoted_strings_can_be_null=False)
    return read, convert


def classify_line(line: str, dim: int, classes: int) -> tuple[str, str] | None:
    """Why one CSV line is bad, in plain Python (the slow path for lines pyarrow refused).

    Parameters
    ----------
    line : str
        One data line.
    dim, classes : int
        D and K.

    Returns
    -------
    tuple of (str, str) or None
        ``(kind, reason)``; None when Python finds nothing wrong with the line.
    """
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
    """Turns CSV lines (with their positions) into dataset rows and reasons for the bad ones.

    Parameters
    ----------
    dim, classes : int
        D and K: a good line has D features and a label in ``[0, K)``.
    header : str, optional
        The file's header line; a line equal to it is skipped, not parsed (nor counted) as data.
    """

    def __init__(self, dim: int, classes: int, header: str | None = None) -> None:
        self.dim = dim
        self.classes = classes
        self.header = header

    # -- fast path: pyarrow over a whole batch
    def _parse_block(self, pos: pa.Array, lines: pa.Array, bad: list[BadRow]) -> pa.Table:
        prefixed = pc.binary_join_element_wise(pc.cast(pos, pa.string()), lines, ",")
        joined = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(prefixed)], pa.int32()), prefixed), "\n")
        data = joined[0].as_buffer()
        read, convert = _csv_options(self.dim, data.size + 1)

        def on_invalid_row(row: pacsv.InvalidRow) -> str:
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
            for i in np.flatnonzero(mask & ok).tolist():
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
        finite = np.asarray(np.isfinite(matrix).all(axis=1))

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
        """Parse one batch of lines; header and blank lines are recognised, never parsed as data.

        Parameters
        ----------
        pos : pyarrow.Array of int64
            Each line's position in its file (reported with a bad row).
        lines : pyarrow.Array of string
            The lines, without their ends of line.

        Returns
        -------
        ParseResult
            Good rows as record batches of :func:`output_arrow_schema`, the bad rows in order of
            discovery, and the number of lines that are not the header.
        """
        bad: list[BadRow] = []
        lines = lines.cast(pa.string())
        headers = [self.header, BOM + self.header] if self.header is not None else []
        is_header = pc.fill_null(pc.is_in(lines, pa.array(headers, pa.string())), False)
        stripped = pc.utf8_trim_whitespace(lines)
        is_blank = pc.and_(pc.equal(stripped, ""), pc.invert(is_header))
        for p in pc.filter(pos, is_blank).to_pylist():
            bad.append(BadRow(p, "blank", "blank line"))
        # A valid record has an even number of quotes; an odd one is a fragment of a record whose
        # quoted field holds a line break (both fragments are refused, so the counts stay per line).
        odd = pc.equal(pc.bit_wise_and(pc.count_substring(lines, '"'), 1), 1)
        broken = pc.fill_null(pc.and_(odd, pc.invert(pc.or_(is_header, is_blank))), False)
        for p in pc.filter(pos, broken).to_pylist():
            bad.append(BadRow(p, "quoted_line_break", QUOTED_LINE_BREAK))
        data_mask = pc.invert(pc.or_(pc.or_(is_header, is_blank), broken))
        n_lines = len(lines) - pc.sum(pc.cast(is_header, pa.int64())).as_py()
        pos, lines = pc.filter(pos, data_mask), pc.filter(lines, data_mask)
        batches = []
        if len(lines):
            for table in self._parse_isolating(pos, lines, bad):
                if table.num_rows:
                    batches.append(self._check(table, bad))
        return ParseResult(batches, bad, n_lines)
