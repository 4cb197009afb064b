"""The reaper, one pass at a time: what it sends again, what it leaves, what it closes."""

from datetime import timedelta

from sqlalchemy import update

from db.schema import Job, WorkUnit, utcnow
from db.session import session_scope
from tests.helpers import add_tiny_model, incoming_folder, make_score_job
from worker import score_job
from worker.reaper import reap_once


class FakeBroker:
    def __init__(self, empty: bool = True) -> None:
        self.sent: list[tuple[str, int, list[int]]] = []
        self.empty = empty

    def send(self, kind: str, job_id: int, unit_ids: list[int]) -> None:
        self.sent.append((kind, job_id, unit_ids))

    def queue_is_empty(self, queue: str) -> bool:
        return self.empty


def _set_unit(unit_id: int, **values) -> None:
    with session_scope() as s:
        s.execute(update(WorkUnit).where(WorkUnit.id == unit_id).values(**values))


def _ago(seconds: float):
    return utcnow() - timedelta(seconds=seconds)


def test_a_dead_workers_unit_is_sent_again_and_then_scored(any_db_url, tiny_checkpoint, tmp_path):
    model_id = add_tiny_model(tiny_checkpoint)
    job_id, units = make_score_job(incoming_folder(tmp_path), model_id, chunk_size=6)
    broker = FakeBroker(empty=False)  # a full queue: only the expired lease is re-sent
    _set_unit(units[0], state="running", owner="dead:1/x", lease_until=_ago(1), sent_at=_ago(60))
    _set_unit(units[1], sent_at=utcnow())
    assert reap_once(broker.send, broker.queue_is_empty) == 1
    assert broker.sent == [("score", job_id, [units[0]])]
    assert reap_once(broker.send, broker.queue_is_empty) == 0  # sent once, not every pass
    for unit in units:  # what the re-sent messages do
        score_job.score_unit(unit)
    reap_once(broker.send, broker.queue_is_empty)  # a worker that died before closing the job
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert (job.state, job.progress_done) == ("succeeded", 12)


def test_units_whose_messages_were_lost_are_sent_again_when_the_queue_is_empty(
    any_db_url, tiny_checkpoint, tmp_path
):
    model_id = add_tiny_model(tiny_checkpoint)
    job_id, units = make_score_job(incoming_folder(tmp_path), model_id, chunk_size=6)
    for unit in units:
        _set_unit(unit, sent_at=_ago(300))
    busy = FakeBroker(empty=False)
    assert reap_once(busy.send, busy.queue_is_empty) == 0  # messages may still be waiting
    restarted = FakeBroker(empty=True)  # Redis came back empty
    assert reap_once(restarted.send, restarted.queue_is_empty) == 2
    assert sorted(u for _, _, ids in restarted.sent for u in ids) == sorted(units)


def test_a_cancelled_job_with_its_worker_gone_is_closed_not_resent(
    any_db_url, tiny_checkpoint, tmp_path
):
    model_id = add_tiny_model(tiny_checkpoint)
    job_id, units = make_score_job(incoming_folder(tmp_path), model_id, chunk_size=6)
    _set_unit(units[0], state="running", owner="dead:1/x", lease_until=_ago(1))
    with session_scope() as s:
        job = s.get(Job, job_id)
        job.state, job.cancel_requested = "running", True
    broker = FakeBroker()
    assert reap_once(broker.send, broker.queue_is_empty) == 0
    with session_scope() as s:
        assert s.get(Job, job_id).state == "cancelled"
