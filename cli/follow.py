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


STALL_S = 120.0  # no progress and no worker holding the job's work for this long: look why


def follow(job_id: int, label: str, poll: float = 1.0, stall_s: float | None = None) -> dict:
    """Show a progress bar until the job ends; returns the job row as a dict.

    A job that stops moving is looked into: with no worker answering it stops following with a
    one-line error (the job stays queued); with workers up it says so once and keeps waiting.
    """
    from db.reports import job_row
    from db.session import session_scope
    from db.store import get_job
    from db.work import live_units

    stall_s = STALL_S if stall_s is None else stall_s
    bar = ProgressBar(label)
    last, moved_at, warned = None, time.monotonic(), False
    while True:
        with session_scope() as s:
            job, live = job_row(get_job(s, job_id)), live_units(s, job_id)
        if job["total"]:
            bar(min(job["done"], job["total"]), job["total"], job["message"])
        if job["state"] in FINAL:
            bar.close()
            return job
        seen = (job["state"], job["done"], job["message"])
        if seen != last or live:
            last, moved_at, warned = seen, time.monotonic(), False
        elif not warned and time.monotonic() - moved_at > stall_s:
            warned = True
            _stalled(job_id, stall_s, bar)
        time.sleep(poll)


def _stalled(job_id: int, stall_s: float, bar: ProgressBar) -> None:
    from db.settings import get_settings, mask_url
    from worker.dispatch import workers_alive

    alive = workers_alive()
    if not alive:
        bar.close()
        url = mask_url(get_settings().broker_url or "")
        raise click.ClickException(
            f"job {job_id} has not moved for {stall_s:.0f} s and no worker answers on {url}; "
            f"start one with `cxrq worker` (the job stays queued: `cxrq status {job_id}`)"
        )
    click.echo(
        f"\njob {job_id} has not moved for {stall_s:.0f} s; {alive} worker(s) up but none on "
        "it yet (busy, or its work is being sent again); still waiting",
        err=True,
    )


def exit_for(job: dict) -> None:
    """Print how a followed job ended; exit non-zero unless it succeeded."""
    click.echo(f"job {job['id']} {job['state']}: {job['message']}")
    if job["state"] != "succeeded":
        raise SystemExit(1)
