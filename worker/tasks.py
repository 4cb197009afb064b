"""Celery tasks: thin wrappers over the job functions that embedded mode calls directly.

Two kinds of failure are told apart. The database being unreachable is waited out (back-off up
to ~15 minutes, never counted against the unit); anything else is retried CHUNK_RETRIES times,
then the unit's images get error rows. Either way the unit's lease is given back on failure,
and the reaper re-sends any unit whose task gave up, so no image is left without a row.
"""

from __future__ import annotations

from db.session import DatabaseError
from worker.celery_app import app
from worker.retry import backoff

CHUNK_RETRIES = 3
DB_RETRIES = 40  # with back-off capped at 30 s: about 15 minutes of outage


@app.task(name="cxrq.train", bind=True, max_retries=DB_RETRIES)
def train(self, job_id: int, unit_id: int | None = None) -> None:  # noqa: ANN001 (celery's Task)
    from worker.train_job import run_training_job

    try:
        run_training_job(job_id, unit_id=unit_id)
    except DatabaseError as exc:
        raise self.retry(exc=exc, countdown=backoff(self.request.retries)) from exc


@app.task(name="cxrq.score_chunk", bind=True, max_retries=DB_RETRIES)
def score_chunk(  # noqa: ANN201
    self,  # noqa: ANN001
    job_id: int,
    unit_id: int,
    failures: int = 0,
    reason: str | None = None,
):
    """Score a unit; retry with back-off, and after the last retry record its images as lost."""
    from worker import score_job

    try:
        try:
            if reason is None:
                written = score_job.score_unit(unit_id)
            else:
                score_job.fail_unit(unit_id, reason)
                written = 0
        except DatabaseError:
            raise
        except Exception as exc:
            failures += 1
            reason = f"{type(exc).__name__}: {exc}"
            if failures <= CHUNK_RETRIES:
                kwargs = {"failures": failures}
                raise self.retry(exc=exc, countdown=2**failures, kwargs=kwargs) from exc
            score_job.fail_unit(unit_id, reason)
            written = 0
        score_job.settle(job_id)
    except DatabaseError as exc:
        kwargs = {"failures": failures, "reason": reason if failures > CHUNK_RETRIES else None}
        raise self.retry(exc=exc, countdown=backoff(self.request.retries), kwargs=kwargs) from exc
    return written
