"""Grouping received instances into studies, each scored as one job.

A study closes when an association that sent to it is released (or aborted), or when no new
instance of it has arrived for `idle_s` seconds, whichever comes first. Closing hands the
study's instances to `on_close`; a later instance of the same study opens it again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Received:
    """One spooled instance: its UIDs, its file and who sent it (no patient data)."""

    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    sop_class_uid: str
    path: Path
    size_bytes: int
    calling_ae: str

    def row(self) -> dict:
        """The fields of its db.schema.DicomInstance row."""
        return {
            "sop_instance_uid": self.sop_instance_uid,
            "series_instance_uid": self.series_instance_uid,
            "study_instance_uid": self.study_instance_uid,
            "sop_class_uid": self.sop_class_uid,
            "calling_ae": self.calling_ae,
            "path": str(self.path),
            "size_bytes": self.size_bytes,
        }


@dataclass
class _Open:
    items: dict[str, Received] = field(default_factory=dict)  # by SOP instance UID
    senders: set[int] = field(default_factory=set)  # associations that sent to it
    last: float = 0.0


class Studies:
    """Open studies, closed by release or idleness; thread-safe (each association has a thread)."""

    def __init__(self, idle_s: float, on_close: Callable[[str, list[Received]], None]) -> None:
        self.idle_s = idle_s
        self._on_close = on_close
        self._open: dict[str, _Open] = {}
        self._lock = threading.Lock()

    def add(self, association: int, item: Received) -> None:
        with self._lock:
            study = self._open.setdefault(item.study_instance_uid, _Open())
            study.items[item.sop_instance_uid] = item  # a resend within the study: once
            study.senders.add(association)
            study.last = time.monotonic()

    def released(self, association: int) -> None:
        """Close every study this association sent to."""
        with self._lock:
            uids = [uid for uid, st in self._open.items() if association in st.senders]
            closing = [(uid, self._open.pop(uid)) for uid in uids]
        self._close(closing)

    def close_idle(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            uids = [uid for uid, st in self._open.items() if now - st.last >= self.idle_s]
            closing = [(uid, self._open.pop(uid)) for uid in uids]
        self._close(closing)

    def close_all(self) -> None:
        with self._lock:
            closing, self._open = list(self._open.items()), {}
        self._close(closing)

    def _close(self, closing: list[tuple[str, _Open]]) -> None:
        for uid, study in closing:
            self._on_close(uid, list(study.items.values()))
