"""Running a job row: in this process (embedded mode) or on the queue (CXRQ_BROKER_URL set)."""

from __future__ import annotations

from typing import Any

from db.settings import get_settings, mask_url
from worker.progress import ProgressFn


class BrokerError(RuntimeError):
    """The queue can't be used; the message is one line that says what to do."""

    user_error = True  # the CLI prints str(exc) as one line, no traceback


def is_queued() -> bool:
    return get_settings().broker_url is not None


def run_training(job_id: int, echo: ProgressFn | None = None) -> int | None:
    from worker.train_job import run_training_job

    return run_training_job(job_id, echo)


def run_scoring(job_id: int, chunks: list[list[str]], echo: ProgressFn | None = None) -> Any:
    from worker.score_job import run_scoring_job

    return run_scoring_job(job_id, chunks, echo)


_apps: dict[str, Any] = {}


def _app() -> Any:
    """A Celery app for the broker configured now (tests and long-lived callers may change it)."""
    from worker.celery_app import make_app

    url = get_settings().broker_url or ""
    if url not in _apps:
        _apps[url] = make_app(url)
    return _apps[url]


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


def submit_training(job_id: int) -> None:
    _app().send_task("cxrq.train", args=[job_id])


def submit_scoring(job_id: int, chunks: list[list[str]]) -> None:
    app = _app()
    with app.producer_or_acquire() as producer:  # one connection for every chunk
        for chunk in chunks:
            app.send_task("cxrq.score_chunk", args=[job_id, chunk], producer=producer)
