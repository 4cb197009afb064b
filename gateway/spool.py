"""The spool: where an instance received over DICOM is kept, durably, until its results are sent.

    spool = Spool(Path("/var/lib/cxrq/spool"), max_bytes=10 * 2**30)
    path = spool.keep(received_file, study_uid, sop_uid)   # fsynced, renamed, folder fsynced

A file is written under `tmp/` (the receiver's chunked temporary file lands there), fsynced,
renamed to `<study UID>/<SOP instance UID>.dcm` and the folder fsynced, so once `keep` returns a
power cut cannot lose it: only then does the sender get success. Named by its UIDs, a resent
instance replaces its own file and is scored once.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

SUFFIX = ".dcm"


class SpoolFull(OSError):
    """The spool cannot take this instance: over its limit, or the disk is full."""


def fsync_path(path: Path) -> None:
    """Make a file's data, or a folder's entries (a rename, a new file), durable. Any descriptor
    flushes a file's data: the receiver may still hold its own open."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _safe_uid(uid: str) -> str:
    """A UID as a file name: UIDs are digits and dots; anything else is refused, not escaped."""
    if not uid or len(uid) > 64 or not all(c.isdigit() or c == "." for c in uid):
        raise ValueError(f"not a DICOM UID: {uid[:70]!r}")
    return uid


class Spool:
    """A folder of received instances, one file per SOP instance, with a size limit."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.max_bytes = max_bytes
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._bytes = sum(p.stat().st_size for p in self.files())

    def path_for(self, study_uid: str, sop_uid: str) -> Path:
        return self.root / _safe_uid(study_uid) / f"{_safe_uid(sop_uid)}{SUFFIX}"

    def clear_tmp(self) -> int:
        """Remove what an interrupted receive left in tmp/ (never acknowledged); returns count."""
        stale = [p for p in self.tmp.iterdir() if p.is_file()]
        for p in stale:
            p.unlink(missing_ok=True)
        return len(stale)

    def keep(self, received: Path, study_uid: str, sop_uid: str) -> Path:
        """Move a received file (in tmp/, or anywhere on this filesystem) into the spool durably.

        Raises SpoolFull when the spool would pass its limit or the disk is full; the caller
        then answers "out of resources" and the file is not kept.
        """
        final = self.path_for(study_uid, sop_uid)
        size = received.stat().st_size
        with self._lock:
            old = final.stat().st_size if final.exists() else 0
            if self._bytes - old + size > self.max_bytes:
                raise SpoolFull(errno.ENOSPC, f"spool over its limit of {self.max_bytes:,} bytes")
            self._bytes += size - old
        try:
            fsync_path(received)
            new_folder = not final.parent.exists()
            final.parent.mkdir(exist_ok=True)
            os.replace(received, final)
            fsync_path(final.parent)
            if new_folder:
                fsync_path(self.root)
        except OSError as exc:
            with self._lock:
                self._bytes -= size - old
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise SpoolFull(exc.errno, "disk full") from None
            raise
        return final

    def files(self) -> Iterator[Path]:
        """Every spooled instance (tmp/ excluded)."""
        for folder in self.root.iterdir():
            if folder.is_dir() and folder != self.tmp:
                yield from folder.glob(f"*{SUFFIX}")

    def delete(self, path: Path) -> None:
        """Remove a spooled file whose results are sent and whose retention is over."""
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return
        with self._lock:
            self._bytes -= size
        if path.parent != self.root and not any(path.parent.iterdir()):
            shutil.rmtree(path.parent, ignore_errors=True)
