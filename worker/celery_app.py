"""The Celery app for queued mode, configured for long ML tasks.

    CXRQ_BROKER_URL=redis://localhost:6379/0 cxrq worker --queues train,score

JSON only (no pickle), late acks with reject-on-worker-lost so a killed worker's task is
redelivered, one message prefetched at a time (a training task can run for many minutes), and
`train`/`score` queues so a CPU-only machine can serve scoring alone. Results live in the
database, so there is no result backend.
"""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_process_init
from kombu import Queue

from db.settings import get_settings

TRAIN_QUEUE, SCORE_QUEUE = "train", "score"


def make_app(broker_url: str | None = None) -> Celery:
    settings = get_settings()
    app = Celery("cxrq", broker=broker_url or settings.broker_url, include=["worker.tasks"])
    timeout = settings.visibility_timeout
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
        task_routes={
            "cxrq.train": {"queue": TRAIN_QUEUE},
            "cxrq.score_chunk": {"queue": SCORE_QUEUE},
        },
        # An unacked task (its worker died) goes back to the queue after `timeout` seconds;
        # it must exceed the longest training, or a live training would be handed out twice.
        broker_transport_options={
            "visibility_timeout": timeout,
            "unacked_restore_interval": max(1, min(60, timeout // 4)),
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        worker_send_task_events=True,  # for Flower
        task_send_sent_event=True,
    )
    return app


app = make_app()


@worker_process_init.connect
def _fresh_child(**_: object) -> None:
    """In each forked pool process: new DB connections, and torch threads that share the cores.

    The parent never imports torch (tasks import it lazily), so CUDA is first touched here,
    after the fork, never in the forking parent.
    """
    from db.session import dispose_engines

    dispose_engines()
    import torch

    concurrency = int(os.environ.get("CXRQ_WORKER_CONCURRENCY") or 1)
    default = max(1, (os.cpu_count() or 1) // concurrency)
    torch.set_num_threads(int(os.environ.get("CXRQ_TORCH_THREADS") or default))
