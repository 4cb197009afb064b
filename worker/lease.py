"""Holding a work unit: claim its lease, renew it from a thread while the work runs, end it.

    with hold(unit_id) as lease:
        if lease is None: return          # done, or another worker holds it
        ... work ...; lease.lost.is_set() says the unit was given away

Renewal runs in a daemon thread so a long chunk or training keeps its lease while torch holds
the main thread (torch releases the GIL in its kernels).
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from db import work
from db.session import DatabaseError, session_scope
from db.settings import get_settings
from worker import metrics


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Lease:
    unit_id: int
    job_id: int
    paths: list[str]
    token: str
    seconds: float
    lost: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _renew_until_stopped(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                with session_scope() as s:
                    renewed = work.renew(s, self.unit_id, self.token, self.seconds)
                metrics.count_renewal(renewed)
                if not renewed:
                    self.lost.set()
                    return
            except DatabaseError:
                continue  # the database is away; try again next beat, the lease may still hold


@contextmanager
def hold(unit_id: int, device: str | None = None) -> Iterator[Lease | None]:
    """The unit's lease for the duration of the block, or None when it can't be had;
    `device` ("cpu", "cuda:0") is recorded on the unit as where it runs."""
    seconds = get_settings().lease_seconds
    token = work.new_token(worker_name())
    with session_scope() as s:
        unit = work.claim(s, unit_id, token, seconds, device)
        lease = unit and Lease(unit_id, unit.job_id, list(unit.paths), token, seconds)
    if lease is None:
        yield None
        return
    beat = threading.Thread(target=lease._renew_until_stopped, daemon=True, name="lease")
    beat.start()
    try:
        yield lease
    finally:
        lease._stop.set()
        beat.join(timeout=5)
        _give_back(lease)


def _give_back(lease: Lease) -> None:
    """Release a unit left unfinished (failed, skipped, interrupted), so a retry or `settle`
    need not wait for the lease to run out; a finished unit is left as it is. Best effort."""
    try:
        with session_scope() as s:
            work.release(s, lease.unit_id, lease.token)
    except DatabaseError:
        pass  # the lease runs out by itself
