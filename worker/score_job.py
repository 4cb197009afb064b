"""The scoring job in embedded mode: every unit scored in this process, then the job closed.

Queued mode runs the same functions, one task per unit (worker.tasks): worker.score_unit
scores and stores a unit, worker.settle closes the job.
"""

from __future__ import annotations

import signal
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from db import work
from db.session import session_scope
from db.store import finish_job, get_job
from worker.progress import ProgressFn
from worker.score_unit import score_unit
from worker.settle import settle


@contextmanager
def _ctrl_c_noted() -> Iterator[dict[str, bool]]:
    """Ctrl-C raises KeyboardInterrupt as always, and is also noted: Python drops an exception
    raised while a weakref callback or __del__ runs ("Exception ignored in ..."), and the job
    would then score on to its end. The note is checked between units."""
    noted = {"interrupted": False}
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield noted  # not ours to change (a test harness, SIGINT ignored in the background)
        return

    def interrupt(signum: int, frame: object) -> None:
        noted["interrupted"] = True
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, previous)


def run_scoring_job(job_id: int, echo: ProgressFn | None = None) -> dict[str, Any]:
    """Embedded mode: score every unit in this process, then close the job.

    Ctrl-C (or any error) ends the job instead of leaving it `running` with no one at work.
    """
    with session_scope() as s:
        units, total = work.unit_ids(s, job_id), get_job(s, job_id).progress_total
    done = 0
    try:
        with _ctrl_c_noted() as noted:
            for unit_id in units:
                done += score_unit(unit_id)
                if echo:
                    echo(done, total, f"{done}/{total} images")
                if noted["interrupted"]:
                    raise KeyboardInterrupt
            result = settle(job_id)
    except KeyboardInterrupt:
        finish_job(job_id, "cancelled", f"interrupted after {done} of {total} images")
        raise
    except Exception as exc:
        finish_job(job_id, "failed", f"{type(exc).__name__}: {exc}", traceback.format_exc())
        raise
    if result is None:  # cancelled from elsewhere while we ran
        with session_scope() as s:
            job = get_job(s, job_id)
            return {"state": job.state, "message": job.message, "scores": None}
    return result
