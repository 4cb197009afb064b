"""The outbox: every result object a job owes each destination, sent until it arrives.

    queue_job(job_id)      # when the job settles: one pending item per SR and SC per destination
    deliver()              # send what is due; a destination that is down is tried again later

Items hold state only (UIDs, destination, attempts). The objects are built at send time from
the spooled source (gateway.results), so the patient data they copy never reaches the
database. A destination that cannot be reached keeps its items pending, with back-off up to
RETRY_MAX_S; an object the destination refuses is failed, with its reason, after FAIL_AFTER
attempts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from db.dicom_rows import (
    claim_item,
    decisive_rows,
    due_items,
    heatmap_of,
    queue_results,
    scorer_facts,
    settle_item,
    unqueued_jobs,
)
from db.schema import FINAL_STATES, Job, OutboxItem, Prediction, SiteProfile, utcnow
from db.session import session_scope
from gateway.senders import Sender, Unreachable, sender_for

if TYPE_CHECKING:
    from pydicom.dataset import Dataset
    from sqlalchemy.orm import Session

log = logging.getLogger("cxrq.gateway")

RETRY_MIN_S, RETRY_MAX_S = 2.0, 60.0
FAIL_AFTER = 5  # attempts before an object the destination refuses is failed for good
SEND_HOLD_S = 120.0  # an attempt in progress keeps other senders off the item this long
BATCH = 32  # objects per association or request


def retry_after(attempts: int) -> float:
    """Seconds before the next attempt: doubling from RETRY_MIN_S, capped at RETRY_MAX_S."""
    return min(RETRY_MAX_S, RETRY_MIN_S * 2 ** max(0, attempts - 1))


@dataclass(frozen=True)
class Built:
    """One result object and the source it answers."""

    what: str  # sr | sc
    source_sop_uid: str
    dataset: Dataset


def job_results(
    s: Session, job: Job, wanted: set[str] | None = None, why: dict[str, str] | None = None
) -> list[Built]:
    """Every result object of a job whose inputs were DICOM (of the `wanted` source SOP UIDs
    only, when given): an SR per scored instance, an SC per instance with a stored heatmap.
    An instance whose objects cannot be built (its file is gone, its header will not do) is
    skipped, with the reason in `why` by source SOP UID."""
    rows = [r for r in decisive_rows(s, job).values() if r.sop_instance_uid and r.prob is not None]
    rows.sort(key=lambda r: r.path)
    why = {} if why is None else why
    built = []
    for number, row in enumerate(rows, start=1):
        uid = row.sop_instance_uid
        if wanted is not None and uid not in wanted:
            continue
        if not Path(row.path).is_file():
            why[uid] = "its source is no longer spooled"
            continue
        try:
            built.extend(_objects(s, job, row, number))
        except Exception as exc:  # one source's header must not hold back the others'
            why[uid] = f"cannot build its results: {type(exc).__name__}: {exc}".splitlines()[0]
    for uid, reason in why.items():
        log.warning("job %d: instance %s: %s", job.id, uid, reason)
    return built


def _objects(s: Session, job: Job, row: Prediction, number: int) -> list[Built]:
    import pydicom

    from gateway.results import build_sc, build_sr, heatmap_overlay

    source = pydicom.dcmread(row.path, stop_before_pixels=True, force=True)
    answer = _answer(s, job, row)
    found = [Built("sr", row.sop_instance_uid, build_sr(source, answer, number))]
    heatmap = heatmap_of(s, job.id, row.scorer, row.path)
    if heatmap is not None:
        pixels = heatmap_overlay(row.path, heatmap)
        found.append(Built("sc", row.sop_instance_uid, build_sc(source, pixels, answer, number)))
    return found


def _answer(s: Session, job: Job, row: Prediction) -> Any:
    from gateway.results import Answer

    scorer = scorer_facts(s, job)
    profile = s.get(SiteProfile, row.site_profile_id) if row.site_profile_id else None
    reasons = tuple(r for r in (row.review_reasons or "").split(",") if r)
    return Answer(
        job_id=job.id,
        prob=row.prob,
        label=row.label,
        threshold=row.threshold,
        threshold_source=job.params.get("threshold_source") or "",
        kind=row.kind,
        prob_viral=row.prob_viral,
        review_reasons=reasons,
        error=row.error,
        model_id=scorer["id"],
        model_name=scorer["name"],
        model_arch=scorer["arch"],
        weights_sha256=scorer["sha256"],
        site=None if profile is None else profile.site,
        site_profile_id=row.site_profile_id,
        scored_at=job.finished_at,  # fixed, so a resent object is the same bytes
    )


def destinations_of(job: Job) -> list[str]:
    return list((job.params.get("dicom") or {}).get("destinations") or [])


def queue_job(job_id: int) -> int:
    """Add the job's result objects to the outbox for each of its destinations; returns how
    many items were added (none twice: an item is unique per result UID and destination)."""
    from gateway.results import result_uid

    with session_scope() as s:
        job = s.get(Job, job_id)
        destinations = destinations_of(job)
        if not destinations or job.state not in FINAL_STATES:
            return 0
        rows = decisive_rows(s, job).values()
        study = job.params["dicom"]["study_instance_uid"]
        items = []
        for row in rows:
            if not row.sop_instance_uid or row.prob is None:
                continue
            kinds = ["sr"] + (["sc"] if heatmap_of(s, job_id, row.scorer, row.path) else [])
            for what in kinds:
                uid = result_uid(row.sop_instance_uid, job_id, what)
                items.extend(
                    {
                        "job_id": job_id,
                        "source_sop_uid": row.sop_instance_uid,
                        "study_instance_uid": study,
                        "what": what,
                        "result_uid": uid,
                        "destination": dest,
                    }
                    for dest in destinations
                )
        return queue_results(s, items)


def deliver(
    job_id: int | None = None, senders: Callable[[str, str], Sender] = sender_for
) -> dict[str, int]:
    """Send every due item (of one job, or all); returns counts of sent, failed and pending."""
    counts = {"sent": 0, "failed": 0, "pending": 0}
    with session_scope() as s:
        due = [_Due.of(item) for item in due_items(s, job_id=job_id)]
        by_dest: dict[tuple[str, int], list[_Due]] = {}
        for item in due:
            if claim_item(s, s.get(OutboxItem, item.id), SEND_HOLD_S):
                # The claim counted this attempt.
                by_dest.setdefault((item.destination, item.job_id), []).append(item)
    for (dest, job), items in by_dest.items():
        for start in range(0, len(items), BATCH):
            _send_batch(dest, job, items[start : start + BATCH], senders, counts)
    return counts


@dataclass(frozen=True)
class _Due:
    """An item due now, read out of its session."""

    id: int
    destination: str
    job_id: int
    what: str
    source_sop_uid: str
    attempts: int  # including the attempt now starting

    @classmethod
    def of(cls, item: OutboxItem) -> _Due:
        return cls(
            item.id,
            item.destination,
            item.job_id,
            item.what,
            item.source_sop_uid,
            item.attempts + 1,
        )


def _send_batch(
    dest: str, job_id: int, items: list[_Due], senders: Callable, counts: dict[str, int]
) -> None:
    with session_scope() as s:
        job = s.get(Job, job_id)
        sender_ae = (job.params.get("dicom") or {}).get("sender_ae") or "CXRQ"
        wanted, why = {i.source_sop_uid for i in items}, {}
        built = {(b.what, b.source_sop_uid): b for b in job_results(s, job, wanted, why)}
    ready = [(i, built.get((i.what, i.source_sop_uid))) for i in items]
    outcomes: dict[int, tuple[str, str | None]] = {}
    for item, b in ready:
        if b is None:
            reason = why.get(item.source_sop_uid, "its source is no longer scored")
            outcomes[item.id] = ("failed", reason)
    sendable = [(i, b) for i, b in ready if b is not None]
    try:
        errors = senders(dest, sender_ae).send([b.dataset for _, b in sendable]) if sendable else []
    except Unreachable as exc:
        errors = None
        reason = str(exc)
        log.warning("job %d: %s; %d object(s) stay pending", job_id, reason, len(sendable))
        for item, _ in sendable:
            outcomes[item.id] = ("pending", reason)
    if errors is not None:
        for (item, _), error in zip(sendable, errors, strict=True):
            attempts = item.attempts
            if error is None:
                outcomes[item.id] = ("sent", None)
            else:
                outcomes[item.id] = ("failed" if attempts >= FAIL_AFTER else "pending", error)
    attempts_of = {i.id: i.attempts for i in items}
    with session_scope() as s:
        for item_id, (state, error) in outcomes.items():
            settle_item(s, item_id, state, error, retry_after(attempts_of[item_id]))
            counts[state] += 1


def queue_ended(within_s: float = 3600.0) -> int:
    """Queue the results of recently ended jobs that have none queued; returns items added."""
    from datetime import timedelta

    with session_scope() as s:
        since = utcnow() - timedelta(seconds=within_s)
        jobs = [job.id for job in unqueued_jobs(s, since) if destinations_of(job)]
    return sum(queue_job(job_id) for job_id in jobs)


def deliver_job(job_id: int) -> dict[str, int]:
    """Queue a settled job's results and send them now (what a worker or the listener runs)."""
    queue_job(job_id)
    return deliver(job_id)


def job_results_to(job_id: int, folder: Path) -> list[Path]:
    """`cxrq export JOB --dicom DIR`: write the job's result objects as <SOP Instance UID>.dcm."""
    from gateway.results import write_results

    with session_scope() as s:
        built = job_results(s, s.get(Job, job_id))
    return write_results([b.dataset for b in built], folder) if built else []
