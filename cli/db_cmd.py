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

    Example: CXRQ_DATABASE_URL=postgresql+psycopg://cxrq@db/cxrq cxrq db upgrade
    """
    with friendly_errors():
        from db.migrate import head_revision
        from db.migrate import upgrade as run_upgrade
        from db.session import connect_or_raise, get_engine
        from db.settings import get_settings, mask_url

        url = get_settings().database_url
        engine = get_engine(url, check_schema=False)
        connect_or_raise(engine)
        run_upgrade(engine)
    click.echo(f"database {mask_url(url)} is at schema {head_revision()}")
