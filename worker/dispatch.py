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


def run_scoring(job_id: int, echo: ProgressFn | None = None) -> Any:
    from worker.score_job import run_scoring_job

    return run_scoring_job(job_id, echo=echo)


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


def workers_alive(timeout: float = 2.0) -> int:
    """How many workers answer a ping on the broker now."""
    try:
        return len(_app().control.ping(timeout=timeout) or [])
    except Exception:
        return 0


TASKS = {"train": "cxrq.train", "score": "cxrq.score_chunk"}


def send_units(app: Any, kind: str, job_id: int, unit_ids: list[int], mark: bool = True) -> None:
    """One message per unit, over one connection; mark: record each unit as sent."""
    from db import work
    from db.session import session_scope

    with app.producer_or_acquire() as producer:
        for unit_id in unit_ids:
            app.send_task(TASKS[kind], args=[job_id, unit_id], producer=producer)
    if mark:
        with session_scope() as s:
            work.mark_sent(s, unit_ids)


def submit(job_id: int, kind: str) -> None:
    """Send every unit of a new job."""
    from db import work
    from db.session import session_scope

    with session_scope() as s:
        ids = work.unit_ids(s, job_id)
    send_units(_app(), kind, job_id, ids)
