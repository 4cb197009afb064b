"""Engine and sessions for CXRQ_DATABASE_URL.

    from db.session import session_scope
    with session_scope() as s:
        s.add(Job(kind="train"))

A SQLite database (the embedded default) is created and migrated on first use; a server database
must be migrated with `cxrq db upgrade`, and a session on an old schema says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from db import migrate
from db.settings import get_settings, mask_url

_engines: dict[str, Engine] = {}


class DatabaseError(RuntimeError):
    """The database can't be used; the message is one line that says what to do."""

    user_error = True  # the CLI prints str(exc) as one line, no traceback


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001 (DB-API objects)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")  # readers (report) never block the writing job
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _new_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(f"CXRQ_DATABASE_URL {url!r} is not a database URL") from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(parsed, pool_pre_ping=True)


def unreachable(url: str, exc: OperationalError) -> DatabaseError:
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "connection failed"
    return DatabaseError(
        f"cannot reach database {mask_url(url)} ({reason}); start it or fix CXRQ_DATABASE_URL"
    )


def connect_or_raise(engine: Engine) -> None:
    """Open and close one connection, turning failure into a one-line DatabaseError."""
    try:
        engine.connect().close()
    except OperationalError as exc:
        raise unreachable(engine.url.render_as_string(hide_password=False), exc) from None


def _check_schema(engine: Engine, url: str) -> None:
    try:
        current = migrate.current_revision(engine)
        if current == migrate.head_revision():
            return
        if engine.dialect.name == "sqlite":
            migrate.upgrade(engine)
            return
    except OperationalError as exc:
        raise unreachable(url, exc) from None
    raise DatabaseError(
        f"database {mask_url(url)} is at schema {current or 'empty'}, "
        f"not {migrate.head_revision()}; run `cxrq db upgrade`"
    )


def get_engine(url: str | None = None, check_schema: bool = True) -> Engine:
    """A cached engine for url (default: CXRQ_DATABASE_URL), schema checked once."""
    url = url or get_settings().database_url
    if url not in _engines:
        engine = _new_engine(url)
        if check_schema:
            _check_schema(engine, url)
        _engines[url] = engine
    return _engines[url]


def dispose_engines() -> None:
    """Forget cached engines (after fork, or between tests with different URLs)."""
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    factory = sessionmaker(get_engine(url), expire_on_commit=False)
    with factory() as session:
        try:
            yield session
            session.commit()
        except OperationalError as exc:
            session.rollback()
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "query failed"
            raise DatabaseError(f"database {mask_url(str(session.bind.url))}: {reason}") from None
        except BaseException:
            session.rollback()
            raise
