"""Schema migrations through Alembic, driven from code: `cxrq db upgrade` calls `upgrade`.

Alembic is imported only to migrate: every command checks the schema, and importing Alembic
costs ~0.3 s, so the check reads the version table itself and compares it with HEAD (a test
keeps HEAD equal to the newest migration script).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

_SCRIPTS = Path(__file__).parent / "migrations"
HEAD = "0010"  # the newest revision in migrations/versions


def _config() -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_SCRIPTS))
    return cfg


def head_revision() -> str:
    return HEAD


def script_head() -> str:
    """The newest revision as Alembic reads it from the scripts (what HEAD must say)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head() or ""


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _run(engine: Engine, name: str, **kwargs: object) -> None:
    from alembic import command

    cfg = _config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        getattr(command, name)(cfg, **kwargs)


def upgrade(engine: Engine, revision: str = "head") -> None:
    _run(engine, "upgrade", revision=revision)


def revision(engine: Engine, message: str) -> None:
    """Autogenerate a new migration from the models (a developer tool)."""
    _run(engine, "revision", message=message, autogenerate=True)


def downgrade(engine: Engine, revision: str) -> None:
    _run(engine, "downgrade", revision=revision)
