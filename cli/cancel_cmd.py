"""`cxrq cancel JOB`: stop a job. Work no worker is running ends at once; a running training
stops at its next epoch, a running chunk finishes and the rest are skipped."""

from __future__ import annotations

import time

import click

from cli.errors import friendly_errors


@click.command()
@click.argument("job_ref")
def cancel(job_ref: str) -> None:
    """Cancel a pending or running job (JOB_REF: an id, or 'latest').

    Waits up to one lease (CXRQ_LEASE_SECONDS) for the workers on it to let go, so a job whose
    worker died is cancelled too.

    Example: cxrq cancel 12
    """
    with friendly_errors():
        from db.settings import get_settings

        job_id, state = _request(job_ref)
        if state is None:
            click.echo(f"job {job_id} is already cancelled")
            return
        deadline = time.monotonic() + get_settings().lease_seconds + 2
        while state not in ("cancelled", "succeeded", "partial", "failed"):
            if time.monotonic() > deadline:
                break
            time.sleep(1)
            state = _cancel_if_idle(job_id)
    click.echo(f"job {job_id}: cancel requested ({state})")


def _request(job_ref: str) -> tuple[int, str | None]:
    """Mark the job to be cancelled; (id, state now), state None when it was already."""
    from db.audit import record
    from db.lookups import resolve_job
    from db.session import session_scope

    with session_scope() as s:
        job = resolve_job(s, job_ref)
        if job.state == "cancelled":
            return job.id, None
        if job.state in ("succeeded", "partial", "failed"):
            raise click.ClickException(f"job {job.id} already ended: {job.state}")
        job.cancel_requested = True
        job_id = job.id
        record(s, "cancel", job_id=job_id, model_id=job.model_id, detail={"state": job.state})
    return job_id, _cancel_if_idle(job_id)


def _cancel_if_idle(job_id: int) -> str:
    """End the job now unless a worker holds live work on it; returns its state."""
    from db.session import session_scope
    from db.store import get_job
    from db.work import cancel_if_idle

    with session_scope() as s:
        job = get_job(s, job_id)
        images = f" after {job.progress_done} of {job.progress_total} images"
        cancel_if_idle(s, job, "cancelled" + (images if job.kind == "score" else ""))
        return job.state
