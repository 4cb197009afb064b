"""`cxrq report audit`: the append-only trail of who changed what, when and why."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import click

from cli.errors import friendly_errors
from cli.output import emit, format_option

AUDIT_COLUMNS = ("id", "at", "actor", "action", "job_id", "model_id", "site", "alias", "why")
AUDIT_CSV = (*AUDIT_COLUMNS, "detail")


def _since(text: str | None) -> datetime | None:
    """'7d', '12h' (that long ago) or an ISO date or time (UTC when it names no zone)."""
    if text is None:
        return None
    units = {"d": "days", "h": "hours", "m": "minutes"}
    if text[-1:] in units and text[:-1].isdigit():
        return datetime.now(timezone.utc) - timedelta(**{units[text[-1]]: int(text[:-1])})
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: give 7d, 12h, 30m or a date such as 2026-12-01"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


@click.command("audit")
@click.option("--action", default=None, help="train, score, promote, calibrate, cancel, ...")
@click.option("--actor", default=None, help="who: CXRQ_ACTOR or the OS user")
@click.option("--job", "job_id", type=int, default=None)
@click.option("--model", "model_id", type=int, default=None)
@click.option("--site", default=None)
@click.option("--since", default=None, help="7d, 12h, 30m or an ISO date/time")
@click.option("--limit", type=click.IntRange(min=1), default=200, show_default=True)
@format_option
def report_audit(
    action: str | None,
    actor: str | None,
    job_id: int | None,
    model_id: int | None,
    site: str | None,
    since: str | None,
    limit: int,
    fmt: str,
) -> None:
    """Every change cxrq made, newest first: who, what, which job, model, site and alias, when
    and why. The rows cannot be altered (the database refuses UPDATE and DELETE on them).

    Example: cxrq report audit --action promote --since 30d
    """
    with friendly_errors():
        from db.audit import AuditFilter, audit_entries
        from db.session import session_scope

        where = AuditFilter(action, actor, job_id, model_id, site, _since(since), limit)
        with session_scope() as s:
            rows = [
                {
                    "id": e.id,
                    "at": e.at.isoformat(timespec="seconds"),
                    "actor": e.actor,
                    "action": e.action,
                    "job_id": e.job_id,
                    "model_id": e.model_id,
                    "site": e.site,
                    "alias": e.alias,
                    "why": e.why,
                    "detail": e.detail,
                }
                for e in audit_entries(s, where)
            ]
        emit(rows, fmt, AUDIT_COLUMNS, AUDIT_CSV)
