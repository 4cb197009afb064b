"""Engine and sessions for CXRQ_DATABASE_URL.

    from db.session import session_scope
    with session_scope() as s:
        s.add(Job(kind="train"))

A SQLite database (the embedded default) is created and migrated on first use; a server database
must be migrated with `cxrq db upgrade`, and a session on an old schema says so.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from db import migrate
from db.settings import get_settings, mask_url

try:
    import fcntl
except ImportError:  # Windows: first uses are not serialised
    fcntl = None

_engines: dict[str, Engine] = {}
BACKENDS = ("sqlite", "postgresql")  # what the migrations and queries are tested on


class DatabaseError(RuntimeError):
    """The database can't be reached now; the message is one line that says what to do.
    Workers retry on it, so a lasting problem is one of the classes below instead."""

    user_error = True  # the CLI prints str(exc) as one line, no traceback


class DatabaseUnusable(RuntimeError):
    """CXRQ_DATABASE_URL names something cxrq can never use as it stands (an unsupported
    database, a missing driver, a file that is not a database); waiting will not fix it."""

    user_error = True


class ValueOutOfRange(LookupError):
    """A number past the database's integer columns (a job id of 20 digits, say): no row can
    have it. The CLI names the job when the number was a job id."""

    user_error = True
    out_of_range = True  # cli.errors reads this without importing the database layer


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001 (DB-API objects)
    cur = dbapi_conn.cursor()
    # First: switching a new file to WAL needs a lock another first use may hold for a moment.
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")  # readers (report) never block the writing job
    cur.close()


def _new_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError:
        raise DatabaseUnusable(
            f"CXRQ_DATABASE_URL {mask_url(url)!r} is not a database URL; use sqlite:///PATH "
            "or postgresql+psycopg://USER@HOST/DB"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in BACKENDS:
        raise DatabaseUnusable(
            f"CXRQ_DATABASE_URL {mask_url(url)}: cxrq supports sqlite:///PATH and "
            f"postgresql+psycopg://USER@HOST/DB databases, not {backend}"
        )
    try:
        return _sqlite_engine(parsed) if backend == "sqlite" else _server_engine(parsed)
    except (ImportError, sa_exc.NoSuchModuleError) as exc:
        raise DatabaseUnusable(
            f"CXRQ_DATABASE_URL {mask_url(url)}: its driver {parsed.drivername} is not "
            f"available ({_first_line(exc)}); use sqlite:/// or postgresql+psycopg://"
        ) from None


def _sqlite_engine(parsed: URL) -> Engine:
    if parsed.database and parsed.database != ":memory:":
        folder = Path(parsed.database).expanduser().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseUnusable(
                f"cannot create folder {folder} for database {parsed.database} "
                f"({exc.strerror or exc}); point CXRQ_DATABASE_URL at a writable place"
            ) from None
    engine = create_engine(parsed)
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _server_engine(parsed: URL) -> Engine:
    return create_engine(parsed, pool_pre_ping=True)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def unreachable(url: str, exc: sa_exc.OperationalError) -> DatabaseError:
    reason = _first_line(exc) if exc.orig else "connection failed"
    if make_url(url).get_backend_name() == "sqlite":
        return DatabaseError(
            f"cannot open database {mask_url(url)} ({reason}); check the file and its folder "
            "are readable and writable, or fix CXRQ_DATABASE_URL"
        )
    return DatabaseError(
        f"cannot reach database {mask_url(url)} ({reason}); start it or fix CXRQ_DATABASE_URL"
    )


def unusable(url: str, exc: sa_exc.DatabaseError) -> DatabaseUnusable:
    """A database that answers but cannot be used, e.g. a SQLite file overwritten by other data."""
    return DatabaseUnusable(
        f"database {mask_url(url)} cannot be used ({_first_line(exc)}); restore it from a "
        "backup, move it aside (a SQLite file is created anew) or fix CXRQ_DATABASE_URL"
    )


def connect_or_raise(engine: Engine) -> None:
    """Open and close one connection, turning failure into a one-line error."""
    url = engine.url.render_as_string(hide_password=False)
    try:
        engine.connect().close()
    except sa_exc.OperationalError as exc:
        raise unreachable(url, exc) from None
    except sa_exc.DatabaseError as exc:
        raise unusable(url, exc) from None


@contextmanager
def _first_use_lock(engine: Engine) -> Iterator[None]:
    """Held while a process checks (and migrates) a SQLite file: two first uses of a new
    database would otherwise both create its tables ("table jobs already exists")."""
    path = engine.url.database
    if fcntl is None or engine.dialect.name != "sqlite" or path in (None, "", ":memory:"):
        yield
        return
    try:
        fd = os.open(f"{Path(path).expanduser()}.migrate-lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:  # a read-only folder: the migration itself will say what is wrong
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays, deleting it would race


def _check_schema(engine: Engine, url: str) -> None:
    try:
        # The whole check, first connection included: a new file's first connection switches
        # it to WAL, which another process's first connection can meet as "database is locked"
        # without waiting. The check takes milliseconds, once per process.
        with _first_use_lock(engine):
            current = migrate.current_revision(engine)
            if current == migrate.head_revision():
                return
            if engine.dialect.name == "sqlite":
                migrate.upgrade(engine)
                return
    except sa_exc.OperationalError as exc:
        raise unreachable(url, exc) from None
    except sa_exc.DatabaseError as exc:
        raise unusable(url, exc) from None
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


def dispose_engines(close: bool = True) -> None:
    """Forget cached engines (between tests with different URLs, or after a fork).

    In a forked child pass close=False: the pooled connections are the parent's, and closing
    them from the child would end the parent's sessions on the server."""
    for engine in _engines.values():
        engine.dispose(close=close)
    _engines.clear()


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    factory = sessionmaker(get_engine(url), expire_on_commit=False)
    with factory() as session:
        try:
            yield session
            session.commit()
        except sa_exc.OperationalError as exc:
            session.rollback()
            reason = _first_line(exc) if exc.orig else "query failed"
            raise DatabaseError(f"database {mask_url(str(session.bind.url))}: {reason}") from None
        except BaseException as exc:
            session.rollback()
            if _out_of_range(exc):
                raise ValueOutOfRange(
                    "a number given is past the database's integer range, so nothing has it; "
                    "`cxrq report jobs` and `cxrq report models` list the ids"
                ) from None
            raise


def _out_of_range(exc: BaseException) -> bool:
    """SQLite's driver refuses an int past 64 bits itself; PostgreSQL answers SQLSTATE 22003."""
    if isinstance(exc, OverflowError):
        return "SQLite INTEGER" in str(exc)
    return isinstance(exc, sa_exc.DataError) and getattr(exc.orig, "sqlstate", None) == "22003"
