"""Celery tasks: thin wrappers over the job functions that embedded mode calls directly."""

from __future__ import annotations

from worker.celery_app import app

CHUNK_RETRIES = 3


@app.task(name="cxrq.train")
def train(job_id: int) -> None:
    from worker.train_job import run_training_job

    run_training_job(job_id)


@app.task(name="cxrq.score_chunk", bind=True, max_retries=CHUNK_RETRIES)
def score_chunk(self, job_id: int, paths: list[str]) -> int:  # noqa: ANN001 (celery's Task)
    """Score a chunk; retry with back-off, and after the last retry record its images as lost."""
    from worker.score_job import fail_chunk, maybe_finish
    from worker.score_job import score_chunk as score

    try:
        written = score(job_id, paths)
    except Exception as exc:
        if self.request.retries < self.max_retries:
            raise self.retry(exc=exc, countdown=2**self.request.retries) from exc
        fail_chunk(job_id, paths, f"{type(exc).__name__}: {exc}")
        written = 0
    maybe_finish(job_id)
    return written
