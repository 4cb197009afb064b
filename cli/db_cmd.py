"""`cxrq db upgrade`: bring the database named by CXRQ_DATABASE_URL to the current schema."""

from __future__ import annotations

import click

from cli.errors import friendly_errors


@click.group()
def db() -> None:
    """Database maintenance.

    Example: cxrq db upgrade
    """


@db.command("upgrade")
def upgrade() -> None:
    """Run the schema migrations (a SQLite database also upgrades itself on first use).

    With CXRQ_WORKER_DATABASE_URL set (PostgreSQL), its role is then granted what workers need:
    every table, but only INSERT and SELECT on the audit trail.

    Example: CXRQ_DATABASE_URL=postgresql+psycopg://cxrq@db/cxrq cxrq db upgrade
    """
    with friendly_errors():
        from db.audit import record
        from db.migrate import current_revision, head_revision
        from db.migrate import upgrade as run_upgrade
        from db.roles import grant_worker_role
        from db.session import connect_or_raise, get_engine, session_scope
        from db.settings import get_settings, mask_url

        settings = get_settings()
        url = settings.database_url
        engine = get_engine(url, check_schema=False)
        connect_or_raise(engine)
        before = current_revision(engine)
        run_upgrade(engine)
        role = ""
        if settings.worker_database_url:
            role = grant_worker_role(engine, settings.worker_database_url)
        with session_scope(url) as s:
            detail = {"from": before, "to": head_revision(), "worker_role": role or None}
            record(s, "db-upgrade", detail=detail)
    click.echo(f"database {mask_url(url)} is at schema {head_revision()}")
    if role:
        click.echo(f"worker role {role}: every table, audit_log INSERT and SELECT only")
