"""`cxrq worker`: a Celery worker consuming the train and/or score queues."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import click

from cli.errors import friendly_errors


def worker_argv(
    queues: str, concurrency: int, loglevel: str = "INFO", device: str | None = None
) -> list[str]:
    """`cxrq worker` run by this interpreter, as tests and benchmarks start their workers."""
    cli = [sys.executable, "-c", "from cli.main import cli; cli()"]
    argv = [
        *cli,
        "worker",
        "--queues",
        queues,
        "--concurrency",
        str(concurrency),
        "--loglevel",
        loglevel,
    ]
    return argv + (["--device", device] if device else [])


def check_device(spec: str) -> str:
    """The spec, checked where it will run: a CUDA device is looked for in a short child
    process, because CUDA touched in this process before the pool forks breaks the children."""
    from training.devices import check_device_spec

    spec = check_device_spec(spec)
    if not spec.startswith("cuda"):
        return spec
    probe = (
        "import sys\nfrom training.devices import DeviceError, resolve_device\n"
        "try:\n    resolve_device(sys.argv[1])\nexcept DeviceError as exc:\n    sys.exit(str(exc))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, spec], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:  # sys.exit(message) wrote the one line to stderr
        raise click.UsageError(done.stderr.strip() or f"device check for {spec} failed")
    return spec


def _prepare_metrics() -> None:
    """Metrics on before the pool forks, so every pool process counts into the same folder."""
    from db.settings import get_settings
    from worker import metrics

    settings = get_settings()
    if settings.metrics_port and metrics.prepare():
        where = f"http://{settings.metrics_bind}:{settings.metrics_port}/metrics"
        click.echo(f"metrics: {where} (Prometheus; CXRQ_METRICS_PORT=0 turns it off)")


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
@click.option(
    "--device",
    default=None,
    help="torch device of every pool process: auto, cpu, cuda or cuda:N "
    "[default: CXRQ_DEVICE, else auto: the first GPU, else the CPU]",
)
@click.option("--loglevel", default="INFO", show_default=True)
def worker(queues: str, concurrency: int, device: str | None, loglevel: str) -> None:
    """Consume queued jobs until stopped (needs CXRQ_BROKER_URL and CXRQ_DATABASE_URL).

    Every worker also sends again the work of workers that died (their leases ran out) and
    messages a restarted broker lost, and closes jobs that are over.

    Example: CXRQ_BROKER_URL=redis://localhost:6379/0 cxrq worker --queues score --concurrency 2

    On a machine with several GPUs run one worker per GPU: `cxrq worker --device cuda:1`.
    """
    names = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = set(names) - {"train", "score"}
    if unknown or not names:
        raise click.UsageError(f"unknown queue(s) {', '.join(sorted(unknown))}; use train, score")
    with friendly_errors():
        from db.settings import get_settings

        # Pool processes read CXRQ_DEVICE and resolve it after the fork.
        os.environ["CXRQ_DEVICE"] = check_device(device or get_settings().device)
        # A worker logs in as its own role when one is given: one that cannot alter the audit
        # trail (`cxrq db upgrade` grants it). The pool processes inherit the URL.
        if worker_url := get_settings().worker_database_url:
            os.environ["CXRQ_DATABASE_URL"] = worker_url
        from db.session import connect_or_raise, get_engine
        from worker import dispatch

        if not dispatch.is_queued():
            raise click.UsageError("CXRQ_BROKER_URL is not set; a worker needs a broker")
        dispatch.check_broker()
        connect_or_raise(get_engine())  # and the schema is current, or say `cxrq db upgrade`
        _prepare_metrics()
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
