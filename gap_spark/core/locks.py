"""One writer per directory: a lock file beside each directory a command writes.

``<DIR>.lock`` (a sibling, so that ingest can swap the dataset directory while holding it) is created
atomically (:func:`gap_spark.core.fs.create_exclusive`) and holds its owner: host, PID, start time,
the command line and a random token. A second run that needs the same directory refuses with one line
naming the holder. A lock is *stale*, and is broken with a warning, when its owner ran on this host and
that process is gone, or when it is older than ``locks.stale_after_hours`` (a crashed run elsewhere).
Locks are re-entrant within a process: the pipeline holds them for its whole run, and the stages it
calls take them again without waiting on themselves.

The design follows the optimistic commit of table formats in miniature (Delta Lake's and Iceberg's
writers fail on a conflicting commit rather than block): a conflicting run fails at once and says why.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass

from gap_spark.core import fs
from gap_spark.core.errors import GapSparkError

__all__ = ["LockHeld", "LockOwner", "directory_lock", "hold_locks", "lock_path"]

log = logging.getLogger(__name__)

_held: dict[str, tuple[int, str]] = {}  # lock path -> (depth, token) of the locks this process holds
_guard = threading.Lock()


class LockHeld(GapSparkError):
    """Another live run holds a directory this command writes."""


@dataclass(frozen=True)
class LockOwner:
    host: str
    pid: int
    started: float
    command: str
    token: str

    @classmethod
    def me(cls) -> LockOwner:
        return cls(host=socket.gethostname(), pid=os.getpid(), started=time.time(),
                   command=" ".join(sys.argv)[:300], token=uuid.uuid4().hex)

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started))
        return f"PID {self.pid} on {self.host}, since {when} ({self.command or 'no command line'})"


def lock_path(directory: str) -> str:
    """``<directory>.lock``: beside the directory, so replacing the directory keeps the lock."""
    return str(directory).rstrip("/") + ".lock"


def _read_owner(path: str) -> LockOwner | None:
    try:
        data = json.loads(fs.read_text(path))
        return LockOwner(host=str(data["host"]), pid=int(data["pid"]), started=float(data["started"]),
                         command=str(data.get("command", "")), token=str(data["token"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # vanished, half-written or foreign: treated by age below


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


# A lock file younger than this whose content cannot be read yet is another run writing it right now.
_BEING_WRITTEN_S = 60.0


def _stale_reason(owner: LockOwner | None, path: str, stale_after_s: float) -> str | None:
    if owner is None:
        written = fs.modified(path)
        if written is not None and time.time() - written < _BEING_WRITTEN_S:
            return None
        return "its content cannot be read"
    if owner.host == socket.gethostname() and not _pid_alive(owner.pid):
        return f"its process ({owner.describe()}) is gone"
    age = time.time() - owner.started
    if age > stale_after_s:
        return f"it is {age / 3600:.1f} h old (locks.stale_after_hours is {stale_after_s / 3600:g})"
    return None


def _create(directory: str, path: str, payload: bytes) -> bool:
    """:func:`fs.create_exclusive`, with an unwritable place (a read-only parent) as one line, as the
    preflight words it (the preflight checks the directory itself, the lock lives beside it)."""
    try:
        return fs.create_exclusive(path, payload)
    except OSError as exc:  # PermissionError, NotADirectoryError, a read-only file system
        raise GapSparkError(f"cannot write the output: {directory}: cannot create its lock file {path} "
                            f"({exc.strerror or exc})") from None


def _acquire(directory: str, stale_after_s: float) -> str:
    path = lock_path(directory)
    with _guard:
        if path in _held:
            depth, token = _held[path]
            _held[path] = (depth + 1, token)
            return path
    me = LockOwner.me()
    payload = json.dumps(asdict(me)).encode()
    for _ in range(3):
        if _create(directory, path, payload):
            with _guard:
                _held[path] = (1, me.token)
            return path
        owner = _read_owner(path)
        reason = _stale_reason(owner, path, stale_after_s)
        if reason is None:
            holder = owner.describe() if owner else "a run that is starting right now"
            raise LockHeld(f"{directory} is in use by another gap-spark run ({holder}); wait for it to "
                           f"finish, or delete {path} if that run is gone")
        log.warning("breaking the stale lock %s: %s", path, reason)
        fs.delete(path)
    raise LockHeld(f"could not lock {directory}: {path} keeps reappearing (another run is starting?)")


def _release(path: str) -> None:
    with _guard:
        depth, token = _held[path]
        if depth > 1:
            _held[path] = (depth - 1, token)
            return
        del _held[path]
    owner = _read_owner(path)
    if owner is not None and owner.token == token:
        fs.delete(path)
    else:
        log.warning("lock %s no longer holds this run's token; leaving it", path)


@contextmanager
def directory_lock(directory: str, stale_after_s: float) -> Iterator[str]:
    """Hold the lock of ``directory`` for the block; yields the lock file's path."""
    path = _acquire(directory, stale_after_s)
    try:
        yield path
    finally:
        _release(path)


@contextmanager
def hold_locks(directories: Sequence[str], stale_after_s: float) -> Iterator[list[str]]:
    """Hold the locks of several directories (each once, in a fixed order, so two runs cannot deadlock)."""
    unique = sorted({str(d).rstrip("/") for d in directories})
    with ExitStack() as stack:
        yield [stack.enter_context(directory_lock(d, stale_after_s)) for d in unique]
