"""Work units and their leases: the database's record of what each job still needs.

A job is cut into units when it is created (one per chunk of images, one for a training). A
worker runs a unit only after `claim` wins a conditional update that gives it the lease; it keeps
the lease by `renew`ing it and ends it with `finish_unit`. Whatever the broker does (redeliver,
duplicate, lose a message), one holder at a time runs a unit, and `expired_units` and
`lost_units` tell the reaper what to send again.

Times are the workers' clocks (UTC); hosts in one cluster are assumed to keep them in sync (NTP).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import Select, and_, func, or_, select, update
from sqlalchemy.orm import Session

from db.schema import FINAL_STATES, Job, WorkUnit, utcnow


def new_token(owner: str) -> str:
    """A claim token: who holds the unit, unique per claim so an old holder can't renew."""
    return f"{owner[:90]}/{uuid.uuid4().hex[:12]}"


def create_units(session: Session, job: Job, chunks: list[list[str]]) -> list[int]:
    """The job's units, in order; a training passes one empty chunk."""
    units = [WorkUnit(job_id=job.id, seq=i, paths=paths) for i, paths in enumerate(chunks)]
    session.add_all(units)
    session.flush()
    return [u.id for u in units]


def unit_ids(session: Session, job_id: int, states: tuple[str, ...] = ("queued",)) -> list[int]:
    query = select(WorkUnit.id).where(WorkUnit.job_id == job_id, WorkUnit.state.in_(states))
    return list(session.scalars(query.order_by(WorkUnit.seq)))


def mark_sent(session: Session, ids: list[int], now: datetime | None = None) -> None:
    if ids:
        session.execute(
            update(WorkUnit)
            .where(WorkUnit.id.in_(ids))
            .values(sent_at=now or utcnow(), sends=WorkUnit.sends + 1)
        )


def claim(
    session: Session, unit_id: int, token: str, lease_s: float, device: str | None = None
) -> WorkUnit | None:
    """Take the unit's lease if nobody holds a live one and it isn't done; None otherwise.
    `device` records where the claimer runs it."""
    now = utcnow()
    won = session.execute(
        update(WorkUnit)
        .where(
            WorkUnit.id == unit_id,
            WorkUnit.state != "done",
            or_(WorkUnit.lease_until.is_(None), WorkUnit.lease_until < now),
        )
        .values(
            state="running",
            owner=token,
            lease_until=now + timedelta(seconds=lease_s),
            device=device,
        )
    ).rowcount
    return session.get(WorkUnit, unit_id) if won else None


def renew(session: Session, unit_id: int, token: str, lease_s: float) -> bool:
    """Extend our lease; False when the unit is no longer ours (the reaper gave it away)."""
    return bool(
        session.execute(
            update(WorkUnit)
            .where(WorkUnit.id == unit_id, WorkUnit.owner == token, WorkUnit.state == "running")
            .values(lease_until=utcnow() + timedelta(seconds=lease_s))
        ).rowcount
    )


def finish_unit(session: Session, unit_id: int) -> None:
    """The unit's work is stored (in the same transaction as its rows)."""
    session.execute(
        update(WorkUnit)
        .where(WorkUnit.id == unit_id)
        .values(state="done", lease_until=None, finished_at=utcnow())
    )


def release(session: Session, unit_id: int, token: str) -> None:
    """Give a unit back unfinished (its task will retry), so the reaper need not wait."""
    session.execute(
        update(WorkUnit)
        .where(WorkUnit.id == unit_id, WorkUnit.owner == token, WorkUnit.state == "running")
        .values(state="queued", lease_until=None, owner=None)
    )


def open_units(session: Session, job_id: int) -> int:
    """Units of the job not done yet."""
    return session.scalar(
        select(func.count()).where(WorkUnit.job_id == job_id, WorkUnit.state != "done")
    )


def live_units(session: Session, job_id: int) -> int:
    """Units of the job some worker is running now (holding an unexpired lease)."""
    return session.scalar(
        select(func.count()).where(
            WorkUnit.job_id == job_id,
            WorkUnit.state == "running",
            WorkUnit.lease_until >= utcnow(),
        )
    )


def _active_job_units() -> Select:
    """Units of open queued jobs: embedded jobs' units are never sent, and their own process
    runs them."""
    return (
        select(WorkUnit, Job.kind)
        .join(Job, Job.id == WorkUnit.job_id)
        .where(
            Job.state.not_in(FINAL_STATES),
            Job.cancel_requested.is_(False),
            WorkUnit.sent_at.is_not(None),
        )
    )


def expired_units(session: Session) -> list[tuple[WorkUnit, str]]:
    """(unit, job kind) whose holder stopped renewing: its worker died or lost the database."""
    query = _active_job_units().where(WorkUnit.state == "running", WorkUnit.lease_until < utcnow())
    return [(unit, kind) for unit, kind in session.execute(query)]


def lost_units(session: Session, grace_s: float) -> list[tuple[WorkUnit, str]]:
    """(unit, job kind) sent more than grace_s ago and never claimed: the message may be gone."""
    before = utcnow() - timedelta(seconds=grace_s)
    query = _active_job_units().where(WorkUnit.state == "queued", WorkUnit.sent_at < before)
    return [(unit, kind) for unit, kind in session.execute(query)]


def take_for_resend(session: Session, unit: WorkUnit) -> bool:
    """Win the right to send this unit again (several reapers may look at once)."""
    same = and_(WorkUnit.state == unit.state, WorkUnit.sends == unit.sends)
    return bool(
        session.execute(
            update(WorkUnit)
            .where(WorkUnit.id == unit.id, same)
            .values(
                state="queued",
                owner=None,
                lease_until=None,
                sent_at=utcnow(),
                sends=WorkUnit.sends + 1,
            )
        ).rowcount
    )


def jobs_to_settle(session: Session) -> list[int]:
    """Open jobs that may be ready to close: every unit done, or cancelled with none running."""
    open_jobs = select(Job.id).where(Job.state.not_in(FINAL_STATES))
    no_open_unit = (
        ~select(WorkUnit.id).where(WorkUnit.job_id == Job.id, WorkUnit.state != "done").exists()
    )
    has_units = select(WorkUnit.id).where(WorkUnit.job_id == Job.id).exists()
    done = open_jobs.where(has_units, no_open_unit)
    cancelled = open_jobs.where(Job.cancel_requested.is_(True))
    return sorted(set(session.scalars(done)) | set(session.scalars(cancelled)))


def cancel_if_idle(session: Session, job: Job, message: str) -> bool:
    """Cancel a job now when no worker holds a live lease on any of its units."""
    if job.state in FINAL_STATES or live_units(session, job.id):
        return False
    won = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.state.not_in(FINAL_STATES))
        .values(state="cancelled", message=message, finished_at=utcnow(), cancel_requested=True)
    ).rowcount
    session.expire(job)
    return bool(won)


def close_abandoned(session: Session, lease_s: float) -> list[int]:
    """Fail embedded jobs whose process is gone (killed, crashed): running, with units never sent
    through a broker, none leased now and none finished for a lease. Returns their ids."""
    stale = utcnow() - timedelta(seconds=lease_s)
    unit = select(WorkUnit.id).where(WorkUnit.job_id == Job.id)
    query = select(Job).where(
        Job.state == "running",
        Job.started_at < stale,
        unit.where(WorkUnit.sent_at.is_(None)).exists(),
        ~unit.where(WorkUnit.sent_at.is_not(None)).exists(),
        ~unit.where(WorkUnit.lease_until >= stale).exists(),
        ~unit.where(WorkUnit.finished_at >= stale).exists(),
    )
    closed = []
    for job in session.scalars(query):
        job.state, job.finished_at = "failed", utcnow()
        job.message = "the process running it stopped (killed or crashed); run the command again"
        closed.append(job.id)
    return closed
