"""The outbox with stand-in destinations: what is pending, sent or failed after each attempt,
the back-off, and an object whose source is gone."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, update

from db.schema import Job, OutboxItem, Prediction
from db.session import session_scope
from gateway import outbox
from gateway.senders import Unreachable
from tests.conftest import make_xray
from tests.gateway.nodes import twins
from tests.helpers import add_tiny_model, job_id_of, run

DEST = "PACS@127.0.0.1:104"


class Stand:
    """A destination that answers as told: None (stored), a reason, or unreachable."""

    def __init__(self, answer: str | None | type[Exception]) -> None:
        self.answer, self.sent = answer, []

    def __call__(self, destination: str, calling_ae: str) -> Stand:
        assert destination == DEST  # only the configured destination is ever sent to
        self.destination = destination
        return self

    def send(self, datasets: list) -> list[str | None]:
        if self.answer is Unreachable:
            raise Unreachable(f"{DEST}: association no answer")
        self.sent.extend(ds.SOPInstanceUID for ds in datasets)
        return [self.answer] * len(datasets)


@pytest.fixture()
def job_id(db_url: str, tiny_checkpoint: dict, tmp_path: Path) -> int:
    """A scored job of two DICOM twins, owing its SRs to DEST."""
    model_id = add_tiny_model(tiny_checkpoint)
    sources = [make_xray(tmp_path / "src" / f"x{i}.png", i == 0, seed=i) for i in range(2)]
    twins(sources, tmp_path / "folder")
    job = job_id_of(run("score", tmp_path / "folder", "--model", model_id, "--explain", "none"))
    with session_scope() as s:
        row = s.get(Job, job)
        row.params = row.params | {"dicom": {"destinations": [DEST], "study_instance_uid": "1.2"}}
    assert outbox.queue_job(job) == 2
    assert outbox.queue_job(job) == 0  # never twice
    return job


def _states() -> list[tuple[str, int]]:
    with session_scope() as s:
        return [
            (i.state, i.attempts) for i in s.scalars(select(OutboxItem).order_by(OutboxItem.id))
        ]


def _due_now() -> None:
    from db.schema import utcnow

    with session_scope() as s:
        s.execute(update(OutboxItem).values(next_attempt_at=utcnow()))


def test_stored_objects_are_sent_once(job_id: int) -> None:
    stand = Stand(None)
    assert outbox.deliver(senders=stand) == {"sent": 2, "failed": 0, "pending": 0}
    assert _states() == [("sent", 1), ("sent", 1)]
    assert outbox.deliver(senders=stand) == {"sent": 0, "failed": 0, "pending": 0}
    assert len(stand.sent) == 2


def test_an_unreachable_destination_keeps_everything_pending_with_back_off(job_id: int) -> None:
    counts = outbox.deliver(senders=Stand(Unreachable))
    assert counts == {"sent": 0, "failed": 0, "pending": 2}
    assert outbox.deliver(senders=Stand(None))["sent"] == 0  # not due yet: back-off
    _due_now()
    assert outbox.deliver(senders=Stand(None))["sent"] == 2
    with session_scope() as s:
        assert all(i.last_error is None and i.sent_at for i in s.scalars(select(OutboxItem)))


def test_an_object_the_destination_refuses_fails_after_the_last_attempt(job_id: int) -> None:
    for attempt in range(1, outbox.FAIL_AFTER + 1):
        outbox.deliver(senders=Stand("C-STORE status 0xA700"))
        expected = "failed" if attempt == outbox.FAIL_AFTER else "pending"
        assert _states() == [(expected, attempt)] * 2
        _due_now()
    with session_scope() as s:
        assert {i.last_error for i in s.scalars(select(OutboxItem))} == {"C-STORE status 0xA700"}


def test_an_object_whose_source_is_gone_fails_with_the_reason(job_id: int) -> None:
    with session_scope() as s:
        first = s.scalars(select(OutboxItem).order_by(OutboxItem.id)).first()

        row = s.scalar(
            select(Prediction).where(Prediction.sop_instance_uid == first.source_sop_uid)
        )
        Path(row.path).unlink()
    assert outbox.deliver(senders=Stand(None)) == {"sent": 1, "failed": 1, "pending": 0}
    with session_scope() as s:
        failed = s.scalar(select(OutboxItem).where(OutboxItem.state == "failed"))
    assert failed.last_error == "its source is no longer spooled"


def test_back_off_doubles_to_its_cap() -> None:
    waits = [outbox.retry_after(n) for n in range(1, 10)]
    assert waits[:3] == [2.0, 4.0, 8.0] and waits[-1] == outbox.RETRY_MAX_S
