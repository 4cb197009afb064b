"""From a closed study to a score job: instances already taken are dropped, the rest become one
job (queued or run here, like any job) whose params keep the UIDs it came from and whose
instance rows are written in the same transaction, so a crash can neither lose nor double one.

    job_id = submit_study(study_uid, batch, IntakeConfig(model="3", destinations=("PACS@h:104",)))
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from db.dicom_rows import record_instances, spooled_again, taken
from db.session import session_scope
from gateway.spool import SUFFIX, Spool
from gateway.studies import Received
from worker import dispatch
from worker.jobs import ScoreParams, create_score_job

log = logging.getLogger("cxrq.gateway")


@dataclass(frozen=True)
class IntakeConfig:
    """How received studies are scored and where their results go."""

    model: str | None = None  # a model id, name or arch (None: the default model)
    site_profile_id: int | None = None  # decide with this site profile (site_profile_id())
    destinations: tuple[str, ...] = ()  # AE@HOST:PORT or a STOW-RS URL
    explain: str = "pneumonia"  # heatmaps, hence secondary captures, of the PNEUMONIA calls
    chunk_size: int = 64
    sender_ae: str = "CXRQ"  # the AE title results are sent from


def site_profile_id(site: str, model: str | None) -> int:
    """The active profile of the site for the model named (none named: the site's `default`
    alias, else the global one, else the only model)."""
    from db.lookups import site_profile_of

    with session_scope() as s:
        return site_profile_of(s, site, model).id


def submit_study(study_uid: str, batch: list[Received], config: IntakeConfig) -> int | None:
    """Create the study's score job for the instances not already taken, and queue it in
    queued mode. Returns the job id, or None when every instance was taken before."""
    with session_scope() as s:
        already = taken(s, [r.sop_instance_uid for r in batch])
        spooled_again(s, sorted(already))
    fresh = [r for r in batch if r.sop_instance_uid not in already]
    if len(fresh) < len(batch):
        log.info("study %s: %d instance(s) already scored", study_uid, len(batch) - len(fresh))
    if not fresh:
        return None
    params = ScoreParams(
        folder=str(fresh[0].path.parent),
        chunk_size=config.chunk_size,
        explain=config.explain,
        dicom=_provenance(study_uid, fresh, config),
        site_profile_id=config.site_profile_id,
    )
    paths = [str(r.path) for r in fresh]
    chunks = [paths[i : i + config.chunk_size] for i in range(0, len(paths), config.chunk_size)]

    def record(s: Session, job_id: int) -> None:
        record_instances(s, job_id, (r.row() for r in fresh))

    job = create_score_job(params, chunks, config.model, record=record)
    log.info("study %s: job %d scores %d instance(s)", study_uid, job.id, len(fresh))
    if dispatch.is_queued():
        dispatch.submit(job.id, "score")
    return job.id


def _provenance(study_uid: str, batch: list[Received], config: IntakeConfig) -> dict:
    return {
        "study_instance_uid": study_uid,
        "series_instance_uids": sorted({r.series_instance_uid for r in batch}),
        "sop_instance_uids": [r.sop_instance_uid for r in batch],
        "calling_ae": sorted({r.calling_ae for r in batch}),
        "destinations": list(config.destinations),
        "sender_ae": config.sender_ae,
    }


def spooled_studies(spool: Spool) -> dict[str, list[Received]]:
    """Every spooled instance not yet taken by a job, by study: what a restart must score."""
    found: dict[str, list[Received]] = {}
    for path in spool.files():
        found.setdefault(path.parent.name, []).append(_from_spool(path))
    with session_scope() as s:
        already = taken(s, [r.sop_instance_uid for batch in found.values() for r in batch])
    pending = {
        study: [r for r in batch if r.sop_instance_uid not in already]
        for study, batch in found.items()
    }
    return {study: batch for study, batch in pending.items() if batch}


def _from_spool(path: Path) -> Received:
    """A spooled instance as received: its UIDs from its header, its name from its file."""
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    series = str(ds.get("SeriesInstanceUID", "") or "")
    sop_class = str(ds.get("SOPClassUID", "") or "")
    sop = path.name.removesuffix(SUFFIX)
    return Received(sop, series, path.parent.name, sop_class, path, path.stat().st_size, "")


def resume_embedded(job_ids: Iterable[int]) -> None:
    """Run the open jobs a stopped listener left (embedded mode: no worker will)."""
    for job_id in job_ids:
        try:
            dispatch.run_scoring(job_id)
        except Exception:
            log.exception("job %d could not be resumed", job_id)
