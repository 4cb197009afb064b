"""The Celery app for queued mode, configured for long ML tasks.

    CXRQ_BROKER_URL=redis://localhost:6379/0 cxrq worker --queues train,score

JSON only (no pickle), late acks with reject-on-worker-lost so a killed worker's task is
redelivered, one message prefetched at a time (a training task can run for many minutes), and
`train`/`score` queues so a CPU-only machine can serve scoring alone. Results live in the
database, so there is no result backend.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from celery import Celery
from celery.signals import (
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)
from kombu import Queue

from db.session import dispose_engines
from db.settings import get_settings
from worker import metrics
from worker.reaper import run_forever
from worker.sending import QUEUES, SCORE_QUEUE, TRAIN_QUEUE, send_units


def _make_app(broker_url: str) -> Celery:
    app = Celery("cxrq", broker=broker_url or None, include=["worker.tasks", "gateway.tasks"])
    timeout = get_settings().visibility_timeout
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        event_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_queues=(Queue(TRAIN_QUEUE), Queue(SCORE_QUEUE)),
        task_default_queue=SCORE_QUEUE,
        task_routes={name: {"queue": queue} for name, queue in QUEUES.items()},
        # The broker's own redelivery of an unacked task. Recovery from a dead worker is the
        # reaper's job (leases, seconds); this stays long so no live training is handed out twice.
        broker_transport_options={
            "visibility_timeout": timeout,
            "unacked_restore_interval": max(1, min(60, timeout // 4)),
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        # A pool child that is replaced (after a crash) reports UP only after its init; on a
        # loaded machine the default 4 s was too short and the worker crash-looped.
        worker_proc_alive_timeout=60,
        worker_send_task_events=True,  # for Flower
        task_send_sent_event=True,
    )
    return app


_apps: dict[str, Celery] = {}


def app_for(broker_url: str | None = None) -> Celery:
    """The app for a broker (default: CXRQ_BROKER_URL as it is now), made once per URL, since
    tests and long-lived callers may change the setting after import."""
    url = broker_url or get_settings().broker_url or ""
    if url not in _apps:
        _apps[url] = _make_app(url)
    return _apps[url]


app = app_for()  # what `cxrq worker` runs and the tasks register with


@worker_process_init.connect
def _fresh_child(**_: object) -> None:
    """In each forked pool process: new DB connections, and torch threads that share the cores.

    The parent imports torch (`cxrq worker`) but never runs it, so CUDA is first touched in a
    child, after the fork.
    """
    dispose_engines(close=False)  # the parent's pooled connections are the parent's to close
    import torch  # here, not at import: a CLI that only sends tasks never loads torch

    settings = get_settings()
    default = max(1, (os.cpu_count() or 1) // settings.worker_concurrency)
    torch.set_num_threads(settings.torch_threads or default)
    from worker.device import process_device

    process_device()  # CXRQ_DEVICE resolved here, in the child; logged once


_reaper_stop = threading.Event()


def queue_is_empty(app_: Celery, queue: str) -> bool:
    """Whether the broker holds no message for queue (unknown counts as empty: re-send)."""
    try:
        with app_.connection_for_read() as conn:
            return conn.default_channel.queue_declare(queue=queue, passive=True).message_count == 0
    except Exception:
        return True


@worker_ready.connect
def _start_reaper(sender: Any = None, **_: object) -> None:
    """In the worker's main process, once its pool is up (so no thread is forked)."""
    app_ = sender.app if sender is not None else app

    def send(kind: str, job_id: int, unit_ids: list[int]) -> None:
        send_units(app_, kind, job_id, unit_ids, mark=False)

    _reaper_stop.clear()
    thread = threading.Thread(
        target=run_forever,
        args=(send, lambda kind: queue_is_empty(app_, kind), _reaper_stop),
        daemon=True,
        name="reaper",
    )
    thread.start()


@worker_ready.connect
def _serve_metrics(**_: object) -> None:
    """/metrics from the main process, once its pool is up (no listening socket is forked)."""
    settings = get_settings()
    metrics.serve(settings.metrics_port, settings.metrics_bind)  # no-op unless `cxrq worker`


@worker_process_shutdown.connect
def _pool_process_exited(pid: int | None = None, **_: object) -> None:
    metrics.process_exited(pid or os.getpid())


@worker_shutdown.connect
def _stop_reaper(**_: object) -> None:
    _reaper_stop.set()
