"""Running a job row: in this process (embedded mode) or on the queue (CXRQ_BROKER_URL set)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from db import work
from db.session import session_scope
from db.settings import get_settings, mask_url
from worker.progress import ProgressFn
from worker.sending import send_units

if TYPE_CHECKING:
    from celery import Celery


class BrokerError(RuntimeError):
    """The queue can't be used; the message is one line that says what to do."""

    user_error = True  # the CLI prints str(exc) as one line, no traceback


def is_queued() -> bool:
    return get_settings().broker_url is not None


def run_training(job_id: int, echo: ProgressFn | None = None) -> int | None:
    from worker.train_job import run_training_job

    return run_training_job(job_id, echo)


def run_scoring(job_id: int, echo: ProgressFn | None = None) -> Any:
    from worker.score_job import run_scoring_job

    return run_scoring_job(job_id, echo=echo)


def _app() -> Celery:
    """The Celery app for the broker configured now."""
    # Imported here: embedded mode never sends a task, so it never pays for loading Celery.
    from worker.celery_app import app_for

    return app_for()


def check_broker(timeout: float = 3.0) -> None:
    """Raise BrokerError, naming the URL, unless the broker accepts a connection now."""
    app, url = _app(), get_settings().broker_url or ""
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BrokerError(
            f"cannot reach broker {mask_url(url)} ({reason}); start Redis "
            "(docker compose up -d redis) or fix CXRQ_BROKER_URL"
        ) from None


def workers_alive(timeout: float = 2.0) -> int:
    """How many workers answer a ping on the broker now."""
    try:
        return len(_app().control.ping(timeout=timeout) or [])
    except Exception:
        return 0


def submit(job_id: int, kind: str) -> None:
    """Send every unit of a new job."""
    with session_scope() as s:
        ids = work.unit_ids(s, job_id)
    send_units(_app(), kind, job_id, ids)
