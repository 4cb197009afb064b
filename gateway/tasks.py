"""The Celery task that builds and sends a settled job's DICOM results (queued mode).

The worker's app includes this module by name, so every worker can run it; it is sent when a
job received over DICOM closes (worker.tasks). A destination that is down keeps the task
retrying at the outbox's back-off for about RETRY_HOURS; the listener also sends anything
overdue, so results outlive this task too.
"""

from __future__ import annotations

from celery import Task

from gateway import outbox
from worker.celery_app import app
from worker.sending import DELIVER_TASK

RETRY_HOURS = 24


@app.task(name=DELIVER_TASK, bind=True, max_retries=int(RETRY_HOURS * 3600 / outbox.RETRY_MAX_S))
def deliver_results(self: Task, job_id: int) -> dict[str, int]:
    counts = outbox.deliver_job(job_id)
    if counts["pending"]:
        raise self.retry(countdown=outbox.retry_after(self.request.retries + 1))
    return counts
