"""The Celery tasks' own logic (retry, give up), run eagerly; the queue itself is in test_queue."""

from pathlib import Path

import pytest
from sqlalchemy import select

from db.schema import Job, Prediction
from db.session import DatabaseError, session_scope
from tests.helpers import add_tiny_model, incoming_folder, make_score_job
from worker import score_unit, settle, tasks
from worker.celery_app import app, app_for
from worker.sending import TASKS


def test_the_app_is_json_only_with_late_acks() -> None:
    conf = app.conf
    assert conf.task_serializer == conf.result_serializer == "json"
    assert conf.accept_content == ["json"]
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] >= 3600  # default: hours
    routes = conf.task_routes
    assert routes["cxrq.train"]["queue"] == "train"
    assert routes["cxrq.score_chunk"]["queue"] == "score"


def test_one_app_per_broker_sends_the_tasks_the_workers_run() -> None:
    assert TASKS == {"train": "cxrq.train", "score": "cxrq.score_chunk"}
    assert {tasks.train.name, tasks.score_chunk.name} == set(TASKS.values())
    assert app_for() is app_for() is app  # the broker setting has not changed since import
    other = app_for("redis://127.0.0.1:1/0")
    assert other is not app and other is app_for("redis://127.0.0.1:1/0")
    assert other.conf.task_routes == app.conf.task_routes


@pytest.fixture()
def job_of_12(any_db_url, tiny_checkpoint, tmp_path: Path) -> tuple[int, list[int]]:
    """(a score job of the tiny model over 12 images in one unit, its unit ids)."""
    model_id = add_tiny_model(tiny_checkpoint)
    return make_score_job(incoming_folder(tmp_path), model_id, chunk_size=12)


def _failing_first(times: int, error: Exception, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make score_unit raise `error` on its first `times` calls, then score; returns the list
    of the units it was called with."""
    real, calls = score_unit.score_unit, []

    def failing(unit_id: int) -> int:
        calls.append(unit_id)
        if len(calls) <= times:
            raise error
        return real(unit_id)

    monkeypatch.setattr(score_unit, "score_unit", failing)
    return calls


def test_a_chunk_that_fails_once_is_retried_and_written_once(
    job_of_12: tuple[int, list[int]], monkeypatch
) -> None:
    job_id, units = job_of_12
    calls = _failing_first(1, ConnectionError("share flapped"), monkeypatch)
    tasks.score_chunk.apply(args=(job_id, units[0]))
    assert calls == [units[0], units[0]]
    with session_scope() as s:
        assert len(s.scalars(select(Prediction)).all()) == 12
        assert s.get(Job, job_id).state == "succeeded"


def test_a_chunk_that_always_fails_becomes_error_rows(
    job_of_12: tuple[int, list[int]], monkeypatch
) -> None:
    job_id, units = job_of_12

    def broken(unit_id: int) -> int:
        raise OSError("share unmounted")

    monkeypatch.setattr(score_unit, "score_unit", broken)
    tasks.score_chunk.apply(args=(job_id, units[0]))
    with session_scope() as s:
        errors = s.scalars(select(Prediction.error)).all()
        job = s.get(Job, job_id)
    assert len(errors) == 12 and all("share unmounted" in e for e in errors)
    assert job.state == "partial"


def test_a_database_outage_is_waited_out_not_recorded_as_lost(
    job_of_12: tuple[int, list[int]], monkeypatch
) -> None:
    """Longer than the three retries a broken chunk gets: still no 'not scored' row."""
    job_id, units = job_of_12
    outage = DatabaseError("database postgresql://x: connection refused")
    calls = _failing_first(6, outage, monkeypatch)
    monkeypatch.setattr(tasks, "backoff", lambda attempt: 0)
    tasks.score_chunk.apply(args=(job_id, units[0]))
    assert len(calls) == 7
    with session_scope() as s:
        assert (
            s.scalars(select(Prediction.error).where(Prediction.error.like("not scored%"))).all()
            == []
        )
        assert s.get(Job, job_id).state == "succeeded"


def test_a_connection_cut_as_the_job_closes_is_retried(
    job_of_12: tuple[int, list[int]], monkeypatch
) -> None:
    job_id, units = job_of_12
    real, calls = settle.settle, []

    def cut_once(job: int):
        calls.append(job)
        if len(calls) == 1:
            raise DatabaseError("database postgresql://x: server closed the connection")
        return real(job)

    monkeypatch.setattr(settle, "settle", cut_once)
    monkeypatch.setattr(tasks, "backoff", lambda attempt: 0)
    tasks.score_chunk.apply(args=(job_id, units[0]))
    with session_scope() as s:
        assert s.get(Job, job_id).state == "succeeded"
        assert len(s.scalars(select(Prediction)).all()) == 12
