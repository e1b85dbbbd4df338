"""URI-aware file access for the small files the driver reads and writes.

Paths may be plain local paths, ``file://`` URIs, or remote URIs (``s3a://``, ``gs://``, ``hdfs://`` ...).
Big data always goes through Spark; this module is for manifests, JSON outputs, figures and reports,
and never calls ``open()`` on a path that could be remote.
"""
from __future__ import annotations

import json
import math
import os
import posixpath
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import pyarrow.fs as pafs

# Schemes whose pyarrow name differs from Hadoop's.
_PYARROW_SCHEME = {"s3a": "s3", "s3n": "s3", "abfss": "abfs"}


def has_scheme(path: str) -> bool:
    parsed = urlparse(str(path))
    return len(parsed.scheme) > 1 and "://" in str(path)


def is_local(path: str) -> bool:
    return not has_scheme(path) or str(path).startswith("file:")


def local_path(path: str) -> str:
    """The absolute local path of a plain path or a ``file://`` URI."""
    path = str(path)
    if path.startswith("file://"):
        path = path[len("file://"):]
    elif path.startswith("file:"):
        path = path[len("file:"):]
    return os.path.abspath(os.path.expanduser(path))


def to_spark_uri(path: str) -> str:
    """A URI Spark reads the same way on every executor: local paths become absolute ``file://`` URIs."""
    path = str(path)
    if is_local(path):
        return "file://" + local_path(path)
    return path


def join(base: str, *parts: str) -> str:
    base = str(base)
    if has_scheme(base):
        return "/".join([base.rstrip("/")] + [p.strip("/") for p in parts])
    return os.path.join(base, *parts)


def basename(path: str) -> str:
    return posixpath.basename(str(path).rstrip("/"))


def resolve(path: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and the path inside it."""
    path = str(path)
    if is_local(path):
        return pafs.LocalFileSystem(), local_path(path)
    scheme, rest = path.split("://", 1)
    scheme = _PYARROW_SCHEME.get(scheme, scheme)
    return pafs.FileSystem.from_uri(f"{scheme}://{rest}")


def exists(path: str) -> bool:
    fs, p = resolve(path)
    return fs.get_file_info(p).type != pafs.FileType.NotFound


def is_dir(path: str) -> bool:
    fs, p = resolve(path)
    return fs.get_file_info(p).type == pafs.FileType.Directory


def size(path: str) -> int:
    fs, p = resolve(path)
    info = fs.get_file_info(p)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(path)
    return int(info.size or 0)


def modified(path: str) -> float | None:
    """Modification time in seconds since the epoch, or None when unknown or missing."""
    fs, p = resolve(path)
    info = fs.get_file_info(p)
    return info.mtime_ns / 1e9 if info.type != pafs.FileType.NotFound and info.mtime_ns is not None else None


def check_writable(directory: str) -> None:
    """Raise ``PermissionError`` (or ``NotADirectoryError``) unless files can be created in ``directory``.

    A missing directory is checked at its nearest existing ancestor, and nothing is left behind: the
    probe file is removed and no directory is created.
    """
    fs, p = resolve(directory)
    target = p
    while fs.get_file_info(target).type == pafs.FileType.NotFound and posixpath.dirname(target) not in ("", target):
        target = posixpath.dirname(target)
    kind = fs.get_file_info(target).type
    if kind != pafs.FileType.Directory:
        raise NotADirectoryError(f"{directory}: {target} is not a directory")
    probe = posixpath.join(target, f".gap-spark-probe-{uuid.uuid4().hex[:8]}")
    try:
        with fs.open_output_stream(probe) as out:
            out.write(b"")
    except OSError as exc:
        raise PermissionError(f"{directory}: cannot create files in {target} ({exc})") from None
    fs.delete_file(probe)


def makedirs(path: str) -> None:
    fs, p = resolve(path)
    fs.create_dir(p, recursive=True)


def delete(path: str) -> None:
    """Remove a file or a directory tree; a missing path is fine."""
    fs, p = resolve(path)
    info = fs.get_file_info(p)
    if info.type == pafs.FileType.Directory:
        fs.delete_dir(p)
    elif info.type != pafs.FileType.NotFound:
        fs.delete_file(p)


def move(src: str, dst: str) -> None:
    fs, s = resolve(src)
    _, d = resolve(dst)
    fs.move(s, d)


def list_dir(path: str) -> list[str]:
    """Names (not paths) directly under ``path``, sorted."""
    fs, p = resolve(path)
    infos = fs.get_file_info(pafs.FileSelector(p, allow_not_found=True))
    return sorted(posixpath.basename(i.path) for i in infos)


def read_bytes(path: str) -> bytes:
    fs, p = resolve(path)
    with fs.open_input_stream(p) as f:
        return f.read()


def read_text(path: str) -> str:
    return read_bytes(path).decode("utf-8")


def write_bytes(path: str, data: bytes) -> None:
    """Write through a temporary sibling and a rename, so readers never see half a file."""
    fs, p = resolve(path)
    parent = posixpath.dirname(p)
    if parent:
        fs.create_dir(parent, recursive=True)
    tmp = f"{p}.tmp-{uuid.uuid4().hex[:8]}"
    with fs.open_output_stream(tmp) as f:
        f.write(data)
    fs.move(tmp, p)


def create_exclusive(path: str, data: bytes) -> bool:
    """Create ``path`` holding ``data`` only if it does not exist; True when this call created it.

    Local files use ``O_CREAT | O_EXCL``, which the kernel makes atomic. Object stores and HDFS through
    pyarrow offer no exclusive create, so there the file is written, read back and kept only if it
    still holds our bytes: a race between two writers in the same second can then go either way, and
    the loser finds out by the read-back (the lock's owner token).
    """
    fs, p = resolve(path)
    parent = posixpath.dirname(p)
    if parent:
        fs.create_dir(parent, recursive=True)
    if isinstance(fs, pafs.LocalFileSystem):
        try:
            fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return True
    if fs.get_file_info(p).type != pafs.FileType.NotFound:
        return False
    with fs.open_output_stream(p) as out:
        out.write(data)
    with fs.open_input_stream(p) as back:
        return bool(back.read() == data)


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def read_json(path: str) -> Any:
    return json.loads(read_text(path))


def write_json(path: str, obj: Any) -> None:
    """Write ``obj`` as indented JSON after :func:`json_safe` (NaN and infinities become null)."""
    write_text(path, json.dumps(json_safe(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def json_safe(obj: Any) -> Any:
    """``obj`` with numpy scalars and arrays turned into Python values and NaN or infinities into None.

    JSON has no NaN: a metric that cannot be computed (no rows) is written as null.
    """
    import numpy as np

    if isinstance(obj, dict):
        return {key: json_safe(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(value) for value in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def open_text_lines(path: str, block_size: int = 1 << 20) -> Iterator[str]:
    """Lines of a text file without their line ends (CRLF too); ``.gz`` is decompressed by pyarrow."""
    filesystem, p = resolve(path)
    with filesystem.open_input_stream(p, compression="detect") as stream:
        pending = b""
        while True:
            block = stream.read(block_size)
            if not block:
                break
            pending += block
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line.rstrip(b"\r").decode("utf-8")
        if pending:
            yield pending.rstrip(b"\r").decode("utf-8")


def read_first_line(path: str) -> str:
    for line in open_text_lines(path, block_size=1 << 16):
        return line
    return ""
