"""Sending units of work to the queue: the Celery task names, their queues, and one message per
unit. The app's configuration (worker.celery_app), the CLI's submit (worker.dispatch) and the
reaper's re-sends all send through here; this module imports neither, so they import it
without a cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from db import work
from db.session import session_scope

if TYPE_CHECKING:
    from celery import Celery

TRAIN_QUEUE, SCORE_QUEUE = "train", "score"
# Job kind -> the task that runs one of its units; the names are the wire format between
# CLIs and workers of possibly different versions, so they never change.
TASKS = {"train": "cxrq.train", "score": "cxrq.score_chunk"}
# A settled job received over DICOM: build and send its results (gateway.tasks).
DELIVER_TASK = "cxrq.deliver_results"
QUEUES = {TASKS["train"]: TRAIN_QUEUE, TASKS["score"]: SCORE_QUEUE, DELIVER_TASK: SCORE_QUEUE}


def send_units(app: Celery, kind: str, job_id: int, unit_ids: list[int], mark: bool = True) -> None:
    """One message per unit, over one connection; mark: record each unit as sent."""
    with app.producer_or_acquire() as producer:
        for unit_id in unit_ids:
            app.send_task(TASKS[kind], args=[job_id, unit_id], producer=producer)
    if mark:
        with session_scope() as s:
            work.mark_sent(s, unit_ids)
