"""`cxrq cancel JOB`: ask a job to stop; training stops at the next epoch, scoring skips chunks."""

from __future__ import annotations

import click

from cli.errors import friendly_errors


@click.command()
@click.argument("job_ref")
def cancel(job_ref: str) -> None:
    """Cancel a pending or running job (JOB_REF: an id, or 'latest').

    Example: cxrq cancel 12
    """
    with friendly_errors():
        from db.queries import resolve_job
        from db.schema import utcnow
        from db.session import session_scope

        with session_scope() as s:
            job = resolve_job(s, job_ref)
            if job.state == "cancelled":
                click.echo(f"job {job.id} is already cancelled")
                return
            if job.state in ("succeeded", "partial", "failed"):
                raise click.ClickException(f"job {job.id} already ended: {job.state}")
            job.cancel_requested = True
            if job.state == "pending":
                # Not started: nothing to interrupt; its tasks see the state and do nothing.
                job.state, job.finished_at, job.message = "cancelled", utcnow(), "cancelled"
            job_id, state = job.id, job.state
    click.echo(f"job {job_id}: cancel requested ({state})")
