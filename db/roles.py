"""The workers' own database role on PostgreSQL: it reads and writes every table but may only
add to the audit trail, so a worker's credentials cannot rewrite who did what.

    grant_worker_role(owner_engine, "postgresql+psycopg://cxrq_worker:secret@db/cxrq")

`cxrq db upgrade` calls it when CXRQ_WORKER_DATABASE_URL is set, after migrating (the grants
name the tables, so they follow the schema). Grants do nothing to a table's owner, so a worker
URL that logs in as the owner is refused. The role is created when missing and the owner may
create roles (in compose the owner is the database's superuser).
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine, make_url

AUDIT_TABLE = "audit_log"
READ_ONLY = ("alembic_version",)


class RoleError(ValueError):
    user_error = True


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ensure_role(conn: Connection, name: str, password: str | None) -> None:
    quoted = conn.dialect.identifier_preparer.quote(name)
    found = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": name}).first()
    if found is None:
        login = "LOGIN" + (f" PASSWORD {_quote_literal(password)}" if password else "")
        conn.exec_driver_sql(f"CREATE ROLE {quoted} {login}")


def grant_worker_role(engine: Engine, worker_url: str) -> str:
    """Give the worker URL's role what workers need and no more; returns its name."""
    if engine.dialect.name != "postgresql":
        return ""  # SQLite has no roles; its triggers still refuse changes to the audit rows
    url = make_url(worker_url)
    name = url.username
    if not name:
        raise RoleError("CXRQ_WORKER_DATABASE_URL names no user; give it the workers' role")
    with engine.begin() as conn:
        owner = conn.execute(
            text("SELECT tableowner FROM pg_tables WHERE tablename = :t"), {"t": AUDIT_TABLE}
        ).scalar()
        if name == owner:
            raise RoleError(
                f"CXRQ_WORKER_DATABASE_URL logs in as {name}, the tables' owner: grants cannot "
                "hold an owner back; give the workers a role of their own"
            )
        _ensure_role(conn, name, url.password)
        role = conn.dialect.identifier_preparer.quote(name)
        for statement in (
            f"GRANT USAGE ON SCHEMA public TO {role}",
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
            f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
            f"REVOKE UPDATE, DELETE, TRUNCATE ON {AUDIT_TABLE} FROM {role}",
            *(f"REVOKE INSERT, UPDATE, DELETE ON {t} FROM {role}" for t in READ_ONLY),
        ):
            conn.exec_driver_sql(statement)
    return name
