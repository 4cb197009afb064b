"""Celery tasks: thin wrappers over the job functions that embedded mode calls directly.

Two kinds of failure are told apart. The database being unreachable is waited out (back-off up
to ~15 minutes, never counted against the unit); anything else is retried CHUNK_RETRIES times,
then the unit's images get error rows. Either way the unit's lease is given back on failure,
and the reaper re-sends any unit whose task gave up, so no image is left without a row.
"""

from __future__ import annotations

from celery import Task

from db.session import DatabaseError
from worker.celery_app import app
from worker.retry import backoff
from worker.sending import DELIVER_TASK, TASKS

CHUNK_RETRIES = 3
DB_RETRIES = 40  # with back-off capped at 30 s: about 15 minutes of outage


@app.task(name=TASKS["train"], bind=True, max_retries=DB_RETRIES)
def train(self: Task, job_id: int, unit_id: int | None = None) -> None:
    from worker.train_job import run_training_job

    try:
        run_training_job(job_id, unit_id=unit_id)
    except DatabaseError as exc:
        raise self.retry(exc=exc, countdown=backoff(self.request.retries)) from exc


@app.task(name=TASKS["score"], bind=True, max_retries=DB_RETRIES)
def score_chunk(
    self: Task,
    job_id: int,
    unit_id: int,
    failures: int = 0,
    reason: str | None = None,
) -> int:
    """Score a unit; retry with back-off, and after the last retry record its images as lost."""
    from worker import score_unit as units
    from worker import settle as closing

    try:
        try:
            if reason is None:
                written = units.score_unit(unit_id)
            else:
                units.fail_unit(unit_id, reason)
                written = 0
        except DatabaseError:
            raise
        except Exception as exc:
            failures += 1
            reason = f"{type(exc).__name__}: {exc}"
            if failures <= CHUNK_RETRIES:
                kwargs = {"failures": failures}
                raise self.retry(exc=exc, countdown=2**failures, kwargs=kwargs) from exc
            units.fail_unit(unit_id, reason)
            written = 0
        if closing.settle(job_id) is not None:
            _results_owed(job_id)
    except DatabaseError as exc:
        kwargs = {"failures": failures, "reason": reason if failures > CHUNK_RETRIES else None}
        raise self.retry(exc=exc, countdown=backoff(self.request.retries), kwargs=kwargs) from exc
    return written


def _results_owed(job_id: int) -> None:
    """A job received over DICOM that just closed: have its results built and sent (by any
    worker; gateway.tasks), if it has somewhere to send them."""
    from db.session import session_scope
    from db.store import get_job

    with session_scope() as s:
        dicom = get_job(s, job_id).params.get("dicom") or {}
    if dicom.get("destinations"):
        app.send_task(DELIVER_TASK, args=[job_id])
