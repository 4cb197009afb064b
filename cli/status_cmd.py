"""`cxrq status JOB`: one line with a job's state and progress."""

from __future__ import annotations

import click

from cli.errors import friendly_errors


@click.command()
@click.argument("job_ref")
def status(job_ref: str) -> None:
    """Print a job's state and progress (JOB_REF: an id, or 'latest').

    Example: cxrq status latest
    """
    with friendly_errors():
        from cli.report_cmd import close_abandoned_jobs
        from db.reports import job_report
        from db.session import session_scope

        close_abandoned_jobs()
        with session_scope() as s:
            job = job_report(s, job_ref)
    progress = f"{job['done']}/{job['total']}" if job["total"] else "-"
    click.echo(f"job {job['id']} {job['kind']} {job['state']} {progress} {job['message']}")
    if job["state"] == "failed":
        raise SystemExit(1)
