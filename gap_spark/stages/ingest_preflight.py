"""Ingest's checks before any heavy work, each a few small reads on the driver.

- the output may be replaced (:func:`gap_spark.contracts.dataset.check_replaceable`);
- no file is given for two splits (same path, or same size, modification time and first bytes);
- each header is pandas' ``,path,label,0..D-1`` (a byte-order mark is allowed) with one D for all;
- each file has data rows, and its first rows are mostly good (a file in another format fails here);
- a file that does not end in a newline is read, with one warning (its last row may be cut short).
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass

import pyarrow as pa

from gap_spark.core import fs
from gap_spark.core.errors import IngestError
from gap_spark.ops.csv_lines import BOM, LineParser, validate_header

__all__ = ["FileCheck", "check_distinct_files", "ends_with_newline", "preflight", "read_headers", "sample_check"]

log = logging.getLogger(__name__)

# Ingest gives up early when a sample of the first lines is mostly bad.
SAMPLE_LINES = 200
# Two inputs with the same size and modification time are the same file when these first bytes agree.
FINGERPRINT_BYTES = 1 << 16


@dataclass(frozen=True)
class FileCheck:
    """What preflight learnt about one input: its header, the mean line length, and its last byte."""

    header: str
    line_bytes: float
    ends_with_newline: bool


def _identity(uri: str) -> tuple[str, tuple[int, int, str]]:
    """The file's real path, and its (size, mtime, digest of the first bytes)."""
    filesystem, path = fs.resolve(uri)
    real = os.path.realpath(path) if fs.is_local(uri) else uri.rstrip("/")
    info = filesystem.get_file_info(path)
    with filesystem.open_input_file(path) as handle:
        head = handle.read_at(min(FINGERPRINT_BYTES, int(info.size or 0)), 0)
    return real, (int(info.size or 0), int(info.mtime_ns or 0), hashlib.sha256(head).hexdigest())


def check_distinct_files(sources: dict[str, str]) -> None:
    """Refuse the same file given for two splits (same real path, or same size, mtime and first bytes)."""
    seen: dict[object, str] = {}
    for split, source in sources.items():
        real, content = _identity(source)
        for key in (("path", real), ("content", content)):
            if key in seen:
                raise IngestError(f"the same file is given as --{seen[key]} and --{split} ({source}): "
                                  "each split needs its own file")
            seen[key] = split


def ends_with_newline(uri: str) -> bool:
    """Whether the file's last byte (decompressed, for ``.gz``) is a newline.

    A ``.gz`` file is read through once to its end: gzip keeps no index, and its trailer holds only the
    size. That is seconds for val and v2 and about a minute for a compressed train file, on the driver.
    """
    filesystem, path = fs.resolve(uri)
    if uri.endswith(".gz"):
        last = b"\n"  # an empty file reads as ending cleanly
        with filesystem.open_input_stream(path, compression="gzip") as stream:
            while block := stream.read(8 << 20):
                last = bytes(block[-1:])
        return last == b"\n"
    size = int(filesystem.get_file_info(path).size or 0)
    if size == 0:
        return True
    with filesystem.open_input_file(path) as handle:
        return bytes(handle.read_at(1, size - 1)) == b"\n"


def read_headers(sources: dict[str, str]) -> tuple[dict[str, str], int]:
    """Each file's header line (without a byte-order mark), checked, and the dimension D they share."""
    headers, dims = {}, {}
    for split, source in sources.items():
        headers[split] = fs.read_first_line(source).removeprefix(BOM)
        dims[split] = validate_header(headers[split], source)
    if len(set(dims.values())) != 1:
        raise IngestError("the files disagree on the feature dimension D: "
                          + ", ".join(f"{s} has {d}" for s, d in dims.items()))
    return headers, dims["train"]


def sample_check(split: str, source: str, header: str, dim: int, classes: int, max_bad_fraction: float) -> float:
    """Fail in seconds, not hours, when a file has no rows or its first rows are mostly bad.

    Returns the mean length in bytes of the first lines (to size the selection's candidates).
    """
    lines = []
    for i, line in enumerate(fs.open_text_lines(source)):
        if i == 0:
            continue
        if line.strip():
            lines.append(line)
        if len(lines) >= SAMPLE_LINES or i > 10 * SAMPLE_LINES:
            break
    if not lines:
        raise IngestError(f"{split} CSV {source} has a header and no rows")
    parser = LineParser(dim, classes, header)
    result = parser.parse(pa.array(range(len(lines)), pa.int64()), pa.array(lines, pa.string()))
    fraction = len(result.bad) / len(lines)
    if fraction > max(0.5, max_bad_fraction):
        kinds = sorted({b.reason for b in result.bad})[:3]
        raise IngestError(f"{source}: {len(result.bad)} of the first {len(lines)} rows are bad "
                          f"({'; '.join(kinds)}): the file is probably not in the expected format")
    return sum(len(line.encode()) + 1 for line in lines) / len(lines)


def preflight(sources: dict[str, str], classes: int, max_bad_fraction: float) -> tuple[dict[str, FileCheck], int]:
    """Every check that needs no Spark, for all files, before any is ingested; returns them and D."""
    check_distinct_files(sources)
    headers, dim = read_headers(sources)
    checks = {}
    for split, source in sources.items():
        line_bytes = sample_check(split, source, headers[split], dim, classes, max_bad_fraction)
        newline = ends_with_newline(source)
        if newline is False:
            log.warning("ingest %s: %s does not end in a newline: its last row is read as it is, and "
                        "quarantined if it is incomplete", split, source)
        checks[split] = FileCheck(headers[split], line_bytes, newline)
    return checks, dim
