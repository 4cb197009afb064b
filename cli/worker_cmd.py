"""`cxrq worker`: a Celery worker consuming the train and/or score queues."""

from __future__ import annotations

import os
import socket
import sys

import click

from cli.errors import friendly_errors


def worker_argv(queues: str, concurrency: int, loglevel: str = "INFO") -> list[str]:
    """`cxrq worker` run by this interpreter, as tests and benchmarks start their workers."""
    cli = [sys.executable, "-c", "from cli.main import cli; cli()"]
    return [
        *cli,
        "worker",
        "--queues",
        queues,
        "--concurrency",
        str(concurrency),
        "--loglevel",
        loglevel,
    ]


@click.command()
@click.option(
    "--queues",
    default="train,score",
    show_default=True,
    help="comma-separated: train, score (a CPU-only machine can serve score alone)",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="parallel tasks in this worker (processes)",
)
@click.option("--loglevel", default="INFO", show_default=True)
def worker(queues: str, concurrency: int, loglevel: str) -> None:
    """Consume queued jobs until stopped (needs CXRQ_BROKER_URL and CXRQ_DATABASE_URL).

    Every worker also sends again the work of workers that died (their leases ran out) and
    messages a restarted broker lost, and closes jobs that are over.

    Example: CXRQ_BROKER_URL=redis://localhost:6379/0 cxrq worker --queues score --concurrency 2
    """
    names = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = set(names) - {"train", "score"}
    if unknown or not names:
        raise click.UsageError(f"unknown queue(s) {', '.join(sorted(unknown))}; use train, score")
    with friendly_errors():
        from db.session import connect_or_raise, get_engine
        from worker import dispatch

        if not dispatch.is_queued():
            raise click.UsageError("CXRQ_BROKER_URL is not set; a worker needs a broker")
        dispatch.check_broker()
        connect_or_raise(get_engine())  # and the schema is current, or say `cxrq db upgrade`
        from worker.celery_app import app
    # Import torch once here, before the pool forks: a pool child then starts in milliseconds
    # instead of importing torch itself, which on a loaded machine outlasted Celery's wait for
    # the child and crash-looped the worker. Importing torch does not initialise CUDA, so
    # children still touch the GPU first, after the fork.
    import torch  # noqa: F401

    # Pool processes read this to split the cores between them.
    os.environ["CXRQ_WORKER_CONCURRENCY"] = str(concurrency)
    app.worker_main(
        [
            "worker",
            "--queues",
            ",".join(names),
            "--concurrency",
            str(concurrency),
            "--loglevel",
            loglevel,
            "--hostname",
            f"cxrq-{os.getpid()}@{socket.gethostname()}",
        ]
    )
