"""Work units and leases: one holder at a time, takeover only after the lease runs out."""

from datetime import timedelta

from sqlalchemy import update

from db import work
from db.schema import Job, WorkUnit, utcnow
from db.session import session_scope
from db.store import create_job


def _job_with_units(n: int = 2) -> tuple[int, list[int]]:
    with session_scope() as s:
        job = create_job(s, "score", {"folder": "/x"})
        return job.id, work.create_units(s, job, [[f"/x/{i}.jpeg"] for i in range(n)])


def _expire(unit_id: int) -> None:
    with session_scope() as s:
        s.execute(
            update(WorkUnit)
            .where(WorkUnit.id == unit_id)
            .values(lease_until=utcnow() - timedelta(seconds=1))
        )


def test_a_unit_has_one_holder_until_its_lease_runs_out(any_db_url) -> None:
    _, (unit, _) = _job_with_units()
    with session_scope() as s:
        assert work.claim(s, unit, "a", 30).paths == ["/x/0.jpeg"]
    with session_scope() as s:
        assert work.claim(s, unit, "b", 30) is None  # a's lease is live
    _expire(unit)
    with session_scope() as s:
        assert work.claim(s, unit, "b", 30) is not None  # a stopped renewing: b takes over
        assert not work.renew(s, unit, "a", 30)  # and a can't take it back
        assert work.renew(s, unit, "b", 30)
        work.finish_unit(s, unit)
    with session_scope() as s:
        assert work.claim(s, unit, "c", 30) is None  # done is done


def test_released_units_are_claimable_at_once(any_db_url) -> None:
    _, (unit, _) = _job_with_units()
    with session_scope() as s:
        work.claim(s, unit, "a", 30)
        work.release(s, unit, "a")
    with session_scope() as s:
        assert work.claim(s, unit, "b", 30) is not None


def test_expired_and_lost_units_are_found_and_resent_once(any_db_url) -> None:
    job_id, (running, queued) = _job_with_units()
    with session_scope() as s:
        work.mark_sent(s, [running, queued], utcnow() - timedelta(seconds=100))
        work.claim(s, running, "a", 30)
    _expire(running)
    with session_scope() as s:
        expired, lost = work.expired_units(s), work.lost_units(s, grace_s=30)
    assert [(u.id, kind) for u, kind in expired] == [(running, "score")]
    assert [u.id for u, _ in lost] == [queued]
    with session_scope() as s:
        assert work.take_for_resend(s, expired[0][0])
    with session_scope() as s:  # a second reaper looking at the same snapshot loses
        assert not work.take_for_resend(s, expired[0][0])
        assert work.expired_units(s) == [] and work.lost_units(s, grace_s=30) != []
        s.get(Job, job_id).state = "cancelled"
    with session_scope() as s:  # nothing of an ended job is sent again
        assert work.expired_units(s) == [] and work.lost_units(s, grace_s=30) == []


def test_cancel_if_idle_waits_for_a_live_lease(any_db_url) -> None:
    job_id, (unit, _) = _job_with_units()
    with session_scope() as s:
        work.claim(s, unit, "a", 30)
    with session_scope() as s:
        assert not work.cancel_if_idle(s, s.get(Job, job_id), "cancelled")
    _expire(unit)  # its worker died
    with session_scope() as s:
        assert work.cancel_if_idle(s, s.get(Job, job_id), "cancelled")
    with session_scope() as s:
        assert s.get(Job, job_id).state == "cancelled"


def test_units_of_embedded_jobs_are_never_reaped(any_db_url) -> None:
    """Never sent through a broker: the CLI process that made them runs them."""
    _, (running, queued) = _job_with_units()
    with session_scope() as s:
        work.claim(s, running, "cli", 30)
    _expire(running)
    with session_scope() as s:
        assert work.expired_units(s) == [] and work.lost_units(s, grace_s=0) == []


def test_an_embedded_job_whose_process_died_is_closed_failed(any_db_url) -> None:
    job_id, (first, second) = _job_with_units()
    with session_scope() as s:
        job = s.get(Job, job_id)
        job.state, job.started_at = "running", utcnow() - timedelta(seconds=120)
        work.claim(s, first, "cli", 30)
    with session_scope() as s:  # its process holds a live lease: alive
        assert work.close_abandoned(s, 30) == []
    _expire(first)  # killed a second ago: nobody renews, nothing finishes
    with session_scope() as s:
        assert work.close_abandoned(s, 30) == []  # not silent for a whole lease yet
        assert work.close_abandoned(s, 0.5) == [job_id]
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job.state == "failed" and "process running it stopped" in job.message
