"""Queued mode: enqueue a job row safely, and follow a job's progress from the database."""

from __future__ import annotations

import time
from collections.abc import Callable

import click

from cli.progress import ProgressBar

FINAL = ("succeeded", "partial", "failed", "cancelled")


def enqueue(job_id: int, send: Callable[[], None]) -> None:
    """Send the job's tasks; if that fails, mark the row failed so nothing is left half-made."""
    from db.store import finish_job

    try:
        send()
    except Exception as exc:
        finish_job(job_id, "failed", f"could not enqueue: {exc}")
        from worker.dispatch import BrokerError

        raise BrokerError(
            f"job {job_id} could not be enqueued ({exc}); is the broker up?"
        ) from None


def follow(job_id: int, label: str, poll: float = 1.0) -> dict:
    """Show a progress bar until the job ends; returns the job row as a dict."""
    from db.queries import job_report
    from db.session import session_scope

    bar = ProgressBar(label)
    while True:
        with session_scope() as s:
            job = job_report(s, str(job_id))
        if job["total"]:
            bar(min(job["done"], job["total"]), job["total"], job["message"])
        if job["state"] in FINAL:
            bar.close()
            return job
        time.sleep(poll)


def exit_for(job: dict) -> None:
    """Print how a followed job ended; exit non-zero unless it succeeded."""
    click.echo(f"job {job['id']} {job['state']}: {job['message']}")
    if job["state"] != "succeeded":
        raise SystemExit(1)
