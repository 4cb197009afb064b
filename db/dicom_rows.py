"""The DICOM gateway's rows: instances received (and which job took each) and the outbox of result
objects owed to destinations. UIDs, paths and states only, never patient data.

    with session_scope() as s:
        record_instances(s, job_id, instances)        # in the transaction that creates the job
        queue_results(s, job_id, items, destination)   # pending, one per result object
        for item in due_items(s, now): ...             # what to send now
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.orm import Session

from db.schema import (
    FINAL_STATES,
    DicomInstance,
    Ensemble,
    Heatmap,
    Job,
    Model,
    OutboxItem,
    Prediction,
    utcnow,
)
from db.scoring import scorer_ref


def record_instances(session: Session, job_id: int, instances: Iterable[dict[str, Any]]) -> None:
    """Mark instances as taken by a job: new ones are added, known ones move to this job."""
    for fields in instances:
        row = session.scalar(
            select(DicomInstance).where(
                DicomInstance.sop_instance_uid == fields["sop_instance_uid"]
            )
        )
        if row is None:
            session.add(DicomInstance(job_id=job_id, **fields))
        else:
            row.job_id, row.path, row.deleted_at = job_id, fields["path"], None


def taken(session: Session, sop_uids: Sequence[str]) -> set[str]:
    """Of these SOP instance UIDs, those a job already took and that need no new job: its job is
    open, or ended with a row for the instance (scored or an error row)."""
    row_for_it = exists().where(
        Prediction.job_id == DicomInstance.job_id, Prediction.path == DicomInstance.path
    )
    job_open = exists().where(Job.id == DicomInstance.job_id, Job.state.not_in(FINAL_STATES))
    found: set[str] = set()
    uids = list(sop_uids)
    for start in range(0, len(uids), 500):  # a restart may ask about a whole spool
        query = select(DicomInstance.sop_instance_uid).where(
            DicomInstance.sop_instance_uid.in_(uids[start : start + 500]),
            DicomInstance.job_id.is_not(None),
            or_(job_open, row_for_it),
        )
        found.update(session.scalars(query))
    return found


def spooled_again(session: Session, sop_uids: Sequence[str]) -> None:
    """Instances sent again after retention removed their file: the file is back, so retention
    will remove it again."""
    if sop_uids:
        session.execute(
            update(DicomInstance)
            .where(
                DicomInstance.sop_instance_uid.in_(list(sop_uids)),
                DicomInstance.deleted_at.is_not(None),
            )
            .values(deleted_at=None)
        )


def open_gateway_jobs(session: Session) -> list[int]:
    """Score jobs made from received instances that have not ended."""
    query = (
        select(Job.id)
        .join(DicomInstance, DicomInstance.job_id == Job.id)
        .where(Job.state.not_in(FINAL_STATES))
        .distinct()
    )
    return sorted(session.scalars(query))


def scorer_facts(session: Session, job: Job) -> dict[str, Any]:
    """Who decided the job's calls, as a result object names it: id, name, arch, weights hash."""
    ref = scorer_ref(session, job)
    if ref.ensemble_id is not None:
        ens = session.get(Ensemble, ref.ensemble_id)
        return {"id": ens.id, "name": f"ensemble {ens.name}", "arch": ens.method, "sha256": ""}
    model = session.get(Model, ref.model_ids[0])
    return {"id": model.id, "name": model.name, "arch": model.arch, "sha256": model.weights_sha256}


def decisive_rows(session: Session, job: Job) -> dict[str, Prediction]:
    """The job's answer per path: the rows of the scorer that decides (an ensemble's own)."""
    key = scorer_ref(session, job).key
    query = select(Prediction).where(Prediction.job_id == job.id, Prediction.scorer == key)
    return {row.path: row for row in session.scalars(query)}


def heatmap_of(session: Session, job_id: int, scorer: str, path: str) -> Heatmap | None:
    query = select(Heatmap).where(
        Heatmap.job_id == job_id, Heatmap.scorer == scorer, Heatmap.path == path
    )
    return session.scalar(query)


def queue_results(session: Session, items: Iterable[dict[str, Any]]) -> int:
    """Add outbox items not already there (same result UID and destination); returns added."""
    added = 0
    for fields in items:
        same = select(OutboxItem.id).where(
            OutboxItem.result_uid == fields["result_uid"],
            OutboxItem.destination == fields["destination"],
        )
        if session.scalar(same) is None:
            session.add(OutboxItem(**fields))
            added += 1
    return added


def due_items(session: Session, now: datetime | None = None, job_id: int | None = None) -> list:
    """Pending items whose next attempt is due, oldest first."""
    query = select(OutboxItem).where(
        OutboxItem.state == "pending", OutboxItem.next_attempt_at <= (now or utcnow())
    )
    if job_id is not None:
        query = query.where(OutboxItem.job_id == job_id)
    return list(session.scalars(query.order_by(OutboxItem.id)))


def claim_item(session: Session, item: OutboxItem, hold_s: float) -> bool:
    """Take an item for one send attempt (several senders may look at once): its next attempt
    moves past the send, so no other sender picks it meanwhile."""
    now = utcnow()
    won = session.execute(
        update(OutboxItem)
        .where(
            OutboxItem.id == item.id,
            OutboxItem.state == "pending",
            OutboxItem.attempts == item.attempts,
        )
        .values(attempts=OutboxItem.attempts + 1, next_attempt_at=now + timedelta(seconds=hold_s))
    ).rowcount
    session.expire(item)
    return bool(won)


def settle_item(
    session: Session, item_id: int, state: str, error: str | None, retry_s: float = 0.0
) -> None:
    """Record an attempt's outcome: sent, failed for good, or pending again after `retry_s`."""
    values: dict[str, Any] = {"state": state, "last_error": error}
    if state == "sent":
        values["sent_at"] = utcnow()
    elif state == "pending":
        values["next_attempt_at"] = utcnow() + timedelta(seconds=retry_s)
    session.execute(update(OutboxItem).where(OutboxItem.id == item_id).values(**values))


def outbox_rows(
    session: Session, state: str | None = None, job_id: int | None = None
) -> list[dict[str, Any]]:
    """The outbox for `cxrq report outbox`, newest first."""
    query = select(OutboxItem)
    if state is not None:
        query = query.where(OutboxItem.state == state)
    if job_id is not None:
        query = query.where(OutboxItem.job_id == job_id)
    columns = [c.name for c in OutboxItem.__table__.columns]
    rows = session.scalars(query.order_by(OutboxItem.id.desc()))
    return [{c: getattr(row, c) for c in columns} for row in rows]


def retention_due(session: Session, before: datetime) -> list[DicomInstance]:
    """Spooled instances whose job ended before `before` with every result object sent (or
    none owed): their files may go."""
    unsent = exists().where(
        OutboxItem.job_id == DicomInstance.job_id,
        OutboxItem.source_sop_uid == DicomInstance.sop_instance_uid,
        OutboxItem.state != "sent",
    )
    ended = exists().where(
        and_(
            Job.id == DicomInstance.job_id,
            Job.state.in_(FINAL_STATES),
            Job.finished_at < before,
        )
    )
    query = select(DicomInstance).where(DicomInstance.deleted_at.is_(None), ended, ~unsent)
    return list(session.scalars(query))


def unqueued_jobs(session: Session, since: datetime) -> list[Job]:
    """Jobs made from received instances that ended after `since` with no outbox item: a job
    whose closing worker died before queueing its results (the listener queues them)."""
    has_items = exists().where(OutboxItem.job_id == Job.id)
    from_dicom = exists().where(DicomInstance.job_id == Job.id)
    query = select(Job).where(
        Job.state.in_(FINAL_STATES), Job.finished_at >= since, from_dicom, ~has_items
    )
    return list(session.scalars(query))
