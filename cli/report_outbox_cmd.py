"""`cxrq report outbox`: the DICOM result objects owed to destinations, and where each stands."""

from __future__ import annotations

import click

from cli.errors import friendly_errors
from cli.output import emit, format_option

OUTBOX_COLUMNS = (
    "id",
    "job_id",
    "what",
    "destination",
    "state",
    "attempts",
    "next_attempt_at",
    "sent_at",
    "last_error",
)
OUTBOX_CSV = (
    *OUTBOX_COLUMNS,
    "source_sop_uid",
    "study_instance_uid",
    "result_uid",
    "created_at",
)


@click.command("outbox")
@click.option("--state", type=click.Choice(["pending", "sent", "failed"]), default=None)
@click.option("--job", "job_id", type=int, default=None, help="one job's items")
@format_option
def report_outbox(state: str | None, job_id: int | None, fmt: str) -> None:
    """Every SR and secondary capture owed to a destination: pending (with its next attempt),
    sent, or failed with the reason. UIDs only: the objects are built when they are sent.

    Example: cxrq report outbox --state pending
    """
    with friendly_errors():
        from db.dicom_rows import outbox_rows
        from db.session import session_scope

        with session_scope() as s:
            rows = outbox_rows(s, state, job_id)
        if fmt == "table" and rows:
            counts = {k: sum(r["state"] == k for r in rows) for k in ("pending", "sent", "failed")}
            click.echo(", ".join(f"{n} {k}" for k, n in counts.items()))
        emit(rows, fmt, OUTBOX_COLUMNS, OUTBOX_CSV)
