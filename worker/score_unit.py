"""One score unit: lease -> training.scoring -> db, nothing in between.

A unit (db.work) is a chunk of paths a worker must hold a lease on to score; its rows and its
`done` mark commit together. Rows are upserted on (job, scorer, path), so a redelivered or
re-sent unit never doubles a row.
"""

from __future__ import annotations

import logging
from pathlib import Path

from db.schema import FINAL_STATES, utcnow
from db.scoring import ScorerRef, scorer_ref, store_unit
from db.session import session_scope
from db.settings import get_settings
from db.store import get_job
from training.data.data_files import folder_label
from training.scoring.answers import NOT_SCORED, failed_answers
from training.scoring.chunk import score_chunk
from worker.device import process_device_name
from worker.jobs import ScoreParams
from worker.lease import hold
from worker.scorers import serving_scorer

log = logging.getLogger(__name__)


def _start_or_skip(job_id: int) -> tuple[ScorerRef, ScoreParams] | None:
    """Mark the job running; None when it ended or a cancel was asked (settling closes it).
    Returns (its scorer, its parameters)."""
    with session_scope() as s:
        job = get_job(s, job_id)
        if job.cancel_requested or job.state in FINAL_STATES:
            return None
        if job.state == "pending":
            job.state, job.started_at = "running", utcnow()
        return scorer_ref(s, job), ScoreParams.from_job(job)


def score_unit(unit_id: int) -> int:
    """Score one unit's images and store their rows; returns how many images (0: skipped)."""
    device = process_device_name()
    with hold(unit_id, device) as lease:
        if lease is None:  # done already, or another worker holds it now
            return 0
        started = _start_or_skip(lease.job_id)
        if started is None:
            return 0
        ref, params = started
        log.info("job %d unit %d: %d images on %s", lease.job_id, unit_id, len(lease.paths), device)
        salt = get_settings().patient_salt
        answers = score_chunk(
            serving_scorer(ref), lease.paths, Path(params.folder), params.explain, salt
        )
        rows, maps = answers.predictions, answers.heatmaps
        with session_scope() as s:
            store_unit(s, lease.job_id, unit_id, ref.key, rows, heatmaps=maps)
        return len(lease.paths)


def fail_unit(unit_id: int, reason: str) -> None:
    """A unit that failed for good: error rows for its images, never over a scored row."""
    with hold(unit_id) as lease:
        if lease is None:
            return
        started = _start_or_skip(lease.job_id)
        if started is None:
            return
        ref, params = started
        reason = NOT_SCORED + (reason.strip().splitlines()[0] if reason.strip() else "unknown")
        truth = [folder_label(Path(p), Path(params.folder)) for p in lease.paths]
        answers = failed_answers(ref.all_keys, lease.paths, truth, reason)
        with session_scope() as s:
            store_unit(s, lease.job_id, unit_id, ref.key, answers, overwrite=False)
