"""Engines from CXRQ_DATABASE_URL: what cannot be used is one line, first uses don't race."""

import multiprocessing
import sqlite3
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from db.migrate import current_revision, head_revision
from db.session import (
    DatabaseUnusable,
    ValueOutOfRange,
    dispose_engines,
    get_engine,
    session_scope,
)

ROUNDS = 6


def _first_use(urls: list[str], barrier: Barrier) -> None:
    for url in urls:
        barrier.wait(timeout=60)  # both processes open the same new file at the same moment
        get_engine(url)


def test_two_first_uses_of_a_new_sqlite_file_do_not_race(tmp_path: Path) -> None:
    urls = [f"sqlite:///{tmp_path / f'race{i}' / 'cxrq.db'}" for i in range(ROUNDS)]
    ctx = multiprocessing.get_context("spawn")  # no torch state or threads carried over
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_first_use, args=(urls, barrier)) for _ in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    # Before the lock, one of each pair failed with "table ... already exists" (exit 1).
    assert [p.exitcode for p in procs] == [0, 0]
    for url in urls:
        assert current_revision(get_engine(url, check_schema=False)) == head_revision()
    dispose_engines()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u@localhost/db", "cxrq supports sqlite:///PATH and postgresql"),
        ("mysql+pymysql://u:hunter2@h/db", "not mysql"),
        ("sqlite+pysqlcipher:///x.db", r"driver sqlite\+pysqlcipher is not available"),
        ("sqlite:////proc/no/such/cxrq.db", "cannot create folder /proc/no"),
        ("no url at all", "is not a database URL"),
    ],
)
def test_an_unusable_url_is_one_line_that_says_what_to_do(url: str, message: str) -> None:
    with pytest.raises(DatabaseUnusable, match=message) as info:
        get_engine(url)
    assert "\n" not in str(info.value) and "hunter2" not in str(info.value)


def test_a_file_that_is_not_a_database_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "x.db").write_text("garbage\n" * 100)
    with pytest.raises(DatabaseUnusable, match=r"cannot be used \(file is not a database\)"):
        get_engine(f"sqlite:///{tmp_path / 'x.db'}")


def test_an_id_past_the_integer_range_is_out_of_range(any_db_url: str) -> None:
    from db.schema import Job

    # SQLite's driver refuses it before the query, PostgreSQL answers "integer out of range".
    with pytest.raises(ValueOutOfRange, match="integer range"), session_scope() as s:
        s.get(Job, 10**20)


@pytest.mark.parametrize("close", [False, True])
def test_dispose_in_a_forked_child_can_leave_the_parents_connections_open(
    db_url: str, close: bool
) -> None:
    with get_engine().connect() as conn:
        raw = conn.connection.dbapi_connection  # back in the pool when the block ends
    dispose_engines(close=close)
    if close:
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            raw.execute("SELECT 1")
    else:
        assert raw.execute("SELECT 1").fetchone() == (1,)  # a fork's parent keeps using it
        raw.close()
