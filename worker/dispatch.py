"""Running a job row: in this process (embedded mode) or on the queue (CXRQ_BROKER_URL set)."""

from __future__ import annotations

from typing import Any

from db.settings import get_settings, mask_url
from worker.progress import ProgressFn


class BrokerError(RuntimeError):
    """The queue can't be used; the message is one line that says what to do."""


def is_queued() -> bool:
    return get_settings().broker_url is not None


def run_embedded(kind: str, job_id: int, echo: ProgressFn | None = None) -> Any:
    """Run a job's task function right here; returns what the task returns."""
    if kind == "train":
        from worker.train_job import run_training_job

        return run_training_job(job_id, echo)
    if kind == "score":
        from worker.score_job import run_scoring_job

        return run_scoring_job(job_id, echo)
    raise ValueError(f"unknown job kind {kind!r}")


def submit(kind: str, job_id: int) -> None:
    broker = get_settings().broker_url
    raise BrokerError(
        f"CXRQ_BROKER_URL={mask_url(broker or '')} is set, but this version runs jobs embedded "
        "only; unset CXRQ_BROKER_URL"
    )
