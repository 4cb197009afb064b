"""Progress reporting that writes to the job row at most every `interval` seconds."""

from __future__ import annotations

import time
from collections.abc import Callable

from db.session import DatabaseError
from db.store import set_progress

ProgressFn = Callable[[int, int, str], None]


class JobProgress:
    """Callable(done, total, message): throttled DB writes, plus an optional live echo."""

    def __init__(self, job_id: int, echo: ProgressFn | None = None, interval: float = 2.0) -> None:
        self.job_id, self.echo, self.interval = job_id, echo, interval
        self._last_write = 0.0

    def __call__(self, done: int, total: int, message: str) -> None:
        if self.echo:
            self.echo(done, total, message)
        now = time.monotonic()
        if done >= total or now - self._last_write >= self.interval:
            try:
                set_progress(self.job_id, done, total, message)
            except DatabaseError:
                return  # progress is advisory: a database blip must not end a training
            self._last_write = now
