"""The part files of a dataset split: what the manifest records of each, and the check every reader makes.

Ingest records, per split, every Parquet file it wrote: its name, rows, size in bytes and a digest of
its footer (the Parquet footer holds each column chunk's offsets and statistics, so two files with
other rows have other footers). :func:`verify_parts` compares a split directory with that record using
one directory listing and one small read at the end of each file, never a Spark job: a missing, extra,
resized or swapped file is refused with one line naming the split and the rows at stake.
"""
from __future__ import annotations

import hashlib
import posixpath
import struct
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from gap_spark.core import fs
from gap_spark.core.errors import DatasetError

__all__ = ["data_files", "part_record", "split_parts", "verify_parts"]

# One read at the end of a file covers the footer of a part with a few dozen row groups.
_TAIL_BYTES = 1 << 16
_MAGIC = b"PAR1"


def _is_hidden(name: str) -> bool:
    """Files Spark's Parquet reader skips (``_tmp-...``, ``.crc`` files, ``_SUCCESS``)."""
    return name.startswith(("_", "."))


def data_files(split_dir: str) -> dict[str, int]:
    """The files a reader of ``split_dir`` would read, name -> size in bytes (one listing).

    A sub-directory counts as a file of size -1: Spark would read what is inside it.
    """
    filesystem, path = fs.resolve(split_dir)
    infos = filesystem.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    found = {}
    for info in infos:
        name = posixpath.basename(info.path)
        if _is_hidden(name):
            continue
        found[name] = int(info.size) if info.type == pafs.FileType.File else -1
    return found


def _footer(filesystem: pafs.FileSystem, path: str, size: int) -> bytes:
    """The footer of a Parquet file: its metadata, its length and the closing magic."""
    with filesystem.open_input_file(path) as handle:
        tail_size = min(size, _TAIL_BYTES)
        tail = handle.read_at(tail_size, size - tail_size)
        if len(tail) < 12 or tail[-4:] != _MAGIC:
            raise DatasetError(f"{path} is not a Parquet file (no footer)")
        length = struct.unpack("<i", tail[-8:-4])[0]
        if length + 8 > size:
            raise DatasetError(f"{path} is not a Parquet file (its footer length is {length})")
        if length + 8 > len(tail):
            tail = handle.read_at(length + 8, size - length - 8)
        return bytes(tail[-(length + 8):])


def part_record(uri: str, size: int | None = None) -> dict[str, Any]:
    """``{"name", "rows", "bytes", "footer"}`` of one Parquet file (two small reads at its end).

    Parameters
    ----------
    uri : str
        The file.
    size : int, optional
        Its size, when a listing gave it already.
    """
    filesystem, path = fs.resolve(uri)
    if size is None:
        size = int(filesystem.get_file_info(path).size or 0)
    footer = _footer(filesystem, path, size)
    rows = pq.read_metadata(pa.BufferReader(_MAGIC + footer)).num_rows
    return {"name": posixpath.basename(path), "rows": int(rows), "bytes": size,
            "footer": hashlib.sha256(footer).hexdigest()[:16]}


def split_parts(split_dir: str) -> list[dict[str, Any]]:
    """The record of every data file under ``split_dir``, by name (what the manifest stores)."""
    files = data_files(split_dir)
    return [part_record(fs.join(split_dir, name), size) for name, size in sorted(files.items())]


def _problems(split_dir: str, recorded: list[dict[str, Any]]) -> tuple[list[str], int]:
    """What differs between the directory and the record, and the recorded rows at stake."""
    found = data_files(split_dir)
    expected = {p["name"]: p for p in recorded}
    problems, at_stake = [], 0
    for name, part in expected.items():
        if name not in found:
            problems.append(f"{name} ({part['rows']:,} rows) is missing")
            at_stake += int(part["rows"])
        elif found[name] != int(part["bytes"]):
            problems.append(f"{name} has {found[name]:,} bytes, the manifest says {int(part['bytes']):,}")
            at_stake += int(part["rows"])
    for name in sorted(set(found) - set(expected)):
        problems.append(f"{name} is not one of the files ingest wrote")
    if problems:
        return problems, at_stake
    filesystem, base = fs.resolve(split_dir)
    for name, part in expected.items():
        footer = _footer(filesystem, posixpath.join(base, name), found[name])
        if hashlib.sha256(footer).hexdigest()[:16] != part["footer"]:
            problems.append(f"{name} holds other rows than ingest wrote (its footer differs)")
            at_stake += int(part["rows"])
    return problems, at_stake


def verify_parts(data_dir: str, split: str, split_dir: str, entry: dict[str, Any]) -> None:
    """Refuse a split whose files differ from the manifest's record of them.

    Parameters
    ----------
    data_dir : str
        The dataset (for the message).
    split : str
        The split's name.
    split_dir : str
        Its directory.
    entry : dict
        The split's manifest entry (``parts`` and ``rows_written``).

    Raises
    ------
    DatasetError
        One line naming the split, the files that differ and the rows missing.
    """
    recorded = entry.get("parts")
    if recorded is None:
        raise DatasetError(f"dataset {data_dir}: the manifest does not record the files of split '{split}' "
                           "(an older gap-spark wrote it); run `gap-spark ingest` again")
    problems, at_stake = _problems(split_dir, recorded)
    if problems:
        total = sum(int(p["rows"]) for p in recorded)
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise DatasetError(f"dataset {data_dir}: split '{split}' does not match its manifest: {shown}. "
                           f"{at_stake:,} of its {total:,} rows are missing or changed; "
                           "run `gap-spark ingest` again")
