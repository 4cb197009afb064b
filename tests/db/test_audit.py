"""The audit trail is append-only for real: triggers refuse UPDATE and DELETE on both backends,
and on PostgreSQL the workers' role may only INSERT and SELECT it."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from cli.main import cli
from db.audit import AuditFilter, audit_entries, record
from db.session import get_engine, session_scope


def test_entries_are_kept_and_filtered(any_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXRQ_ACTOR", "dr-lee")
    with session_scope() as s:
        record(s, "score", job_id=3, model_id=1, detail={"images": 4})
        record(s, "promote", model_id=1, alias="default", why="best on our set")
    with session_scope() as s:
        newest = audit_entries(s)
        assert [e.action for e in newest] == ["promote", "score"]
        assert {e.actor for e in newest} == {"dr-lee"}
        assert [e.job_id for e in audit_entries(s, AuditFilter(action="score"))] == [3]


@pytest.mark.parametrize("statement", ["UPDATE audit_log SET why = 'x'", "DELETE FROM audit_log"])
def test_triggers_refuse_changes_even_to_the_owner(any_db_url: str, statement: str) -> None:
    with session_scope() as s:
        record(s, "score", job_id=1)
    with pytest.raises(DBAPIError, match="append-only"), get_engine().begin() as conn:
        conn.execute(text(statement))
    with session_scope() as s:
        assert len(audit_entries(s)) == 1


def _as_worker(worker_url: str, statement: str) -> None:
    engine = create_engine(worker_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(statement))
    finally:
        engine.dispose()


def test_workers_role_can_add_to_the_trail_but_never_alter_it(
    postgres_url: str, worker_role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CXRQ_WORKER_DATABASE_URL", worker_role)
    result = CliRunner().invoke(cli, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "audit_log INSERT and SELECT only" in result.output
    insert = (
        "INSERT INTO audit_log (at, actor, action, detail) VALUES (now(), 'w', 'drift-alarm', '{}')"
    )
    _as_worker(worker_role, insert)
    _as_worker(
        worker_role,
        "INSERT INTO jobs (kind, state, params, progress_done, "
        "progress_total, message, cancel_requested, created_at) VALUES "
        "('score', 'pending', '{}', 0, 0, '', false, now())",
    )
    _as_worker(worker_role, "UPDATE jobs SET state = 'running'")  # the work tables: yes
    for forbidden in (
        "UPDATE audit_log SET why = 'rewritten'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
        "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change",
        "DROP TRIGGER audit_log_no_change ON audit_log",
        "UPDATE alembic_version SET version_num = '0001'",
    ):
        with pytest.raises(DBAPIError, match="permission denied|must be owner"):
            _as_worker(worker_role, forbidden)
    with session_scope() as s:
        actions = [e.action for e in audit_entries(s)]
    assert actions == ["drift-alarm", "db-upgrade"]


def test_a_worker_url_that_logs_in_as_the_owner_is_refused(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CXRQ_WORKER_DATABASE_URL", postgres_url)
    result = CliRunner().invoke(cli, ["db", "upgrade"])
    assert result.exit_code != 0
    assert "the tables' owner" in result.output
