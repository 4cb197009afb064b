"""One score unit: lease -> training.scoring -> db, nothing in between.

A unit (db.work) is a chunk of paths a worker must hold a lease on to score; its rows and its
`done` mark commit together. Rows are upserted on (job, scorer, path), so a redelivered or
re-sent unit never doubles a row.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from db.schema import FINAL_STATES, utcnow
from db.scoring import ScorerRef, scorer_ref, shadow_ref, store_unit
from db.session import session_scope
from db.settings import get_settings
from db.store import get_job
from training.data.data_files import folder_label
from training.scoring.answers import NOT_SCORED, failed_answers
from training.scoring.chunk import score_chunk
from worker import metrics
from worker.device import process_device_name
from worker.jobs import ScoreParams
from worker.lease import hold
from worker.scorers import serving_scorer

log = logging.getLogger(__name__)


def _start_or_skip(job_id: int) -> tuple[ScorerRef, ScoreParams, ScorerRef | None] | None:
    """Mark the job running; None when it ended or a cancel was asked (settling closes it).
    Returns (its scorer, its parameters, its shadow scorer or None)."""
    with session_scope() as s:
        job = get_job(s, job_id)
        if job.cancel_requested or job.state in FINAL_STATES:
            return None
        if job.state == "pending":
            job.state, job.started_at = "running", utcnow()
        return scorer_ref(s, job), ScoreParams.from_job(job), shadow_ref(s, job)


def score_unit(unit_id: int) -> int:
    """Score one unit's images and store their rows; returns how many images (0: skipped)."""
    device = process_device_name()
    with hold(unit_id, device) as lease:
        if lease is None:  # done already, or another worker holds it now
            return 0
        started = _start_or_skip(lease.job_id)
        if started is None:
            return 0
        ref, params, shadow = started
        clock = time.monotonic()  # metrics: the unit's latency
        log.info("job %d unit %d: %d images on %s", lease.job_id, unit_id, len(lease.paths), device)
        salt, memo = get_settings().patient_salt, {}
        answers = score_chunk(
            serving_scorer(ref), lease.paths, Path(params.folder), params.explain, salt, memo
        )
        rows, maps = answers.predictions, answers.heatmaps
        if shadow is not None:
            rows = rows + shadow_answers(shadow, lease.paths, Path(params.folder), salt, memo)
        with session_scope() as s:
            store_unit(s, lease.job_id, unit_id, ref.key, rows, heatmaps=maps)
        metrics.count_unit(ref.key, rows, time.monotonic() - clock)
        return len(lease.paths)


def shadow_answers(
    shadow: ScorerRef, paths: list[str], folder: Path, salt: str | None, memo: dict
) -> list[dict]:
    """The shadow model's rows on the same images, decoded once for both (the memo), marked
    shadow. A shadow that fails stores error rows for itself and never fails the unit."""
    try:
        answers = score_chunk(serving_scorer(shadow), paths, folder, "none", salt, memo)
        rows = answers.predictions
    except Exception as exc:  # the shadow never decides, so it never stops the job either
        log.warning("shadow model %s failed on a unit: %s", shadow.key, exc)
        said = (str(exc).strip().splitlines() or [""])[0][:200]
        reason = NOT_SCORED + f"shadow {type(exc).__name__}: {said}"
        truth = [folder_label(Path(p), folder) for p in paths]
        rows = failed_answers(shadow.all_keys, paths, truth, reason)
    return [{**row, "shadow": True} for row in rows]


def fail_unit(unit_id: int, reason: str) -> None:
    """A unit that failed for good: error rows for its images, never over a scored row."""
    with hold(unit_id) as lease:
        if lease is None:
            return
        started = _start_or_skip(lease.job_id)
        if started is None:
            return
        ref, params, _ = started
        reason = NOT_SCORED + (reason.strip().splitlines()[0] if reason.strip() else "unknown")
        truth = [folder_label(Path(p), Path(params.folder)) for p in lease.paths]
        answers = failed_answers(ref.all_keys, lease.paths, truth, reason)
        with session_scope() as s:
            store_unit(s, lease.job_id, unit_id, ref.key, answers, overwrite=False)
        metrics.count_unit(ref.key, answers)
