"""The scoring job: one prediction row per image and scorer, written chunk by chunk, then scores.

Both modes run the same functions: embedded mode loops over the chunks in the CLI process;
queued mode sends one task per chunk. Rows are upserted on (job, scorer, path), so a
redelivered or retried chunk never doubles a row, and progress is the count of the job's own
scorer's rows (the model's, or the ensemble's combined ones). Whichever chunk writes the last
missing row closes the job (`maybe_finish`), exactly once.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import torch
from sqlalchemy import func, select, update

from db.schema import CLASSES_BY_INDEX, Job, Model, Prediction, utcnow
from db.session import session_scope
from db.store import finish_job, get_job, save_evaluation, upsert_predictions
from training.data_files import label_from_path
from training.metrics import binary_scores
from worker.progress import ProgressFn
from worker.scorers import (
    PREVALENCE_THRESHOLD,
    Scorer,
    failed_rows,
    prediction_rows,
    scorer_of,
)

NOT_SCORED = "not scored: "  # error prefix of rows whose chunk failed for good


def true_label(path: Path, folder: Path) -> str | None:
    """NORMAL/PNEUMONIA when the scored folder, or a folder inside it, is named so."""
    inside = path.relative_to(folder.parent) if path.is_relative_to(folder.parent) else path
    label = label_from_path(inside)
    return None if label is None else CLASSES_BY_INDEX[label]


def _start_or_skip(job_id: int) -> tuple[Scorer, Path] | None:
    """Mark the job running; None when it was cancelled (and mark it so) or already ended."""
    with session_scope() as s:
        job = get_job(s, job_id)
        if job.cancel_requested and job.state in ("pending", "running"):
            job.state, job.finished_at = "cancelled", utcnow()
            job.message = f"cancelled after {job.progress_done} of {job.progress_total} images"
        if job.state not in ("pending", "running"):
            return None
        if job.state == "pending":
            job.state, job.started_at = "running", utcnow()
        return scorer_of(job), Path(job.params["folder"])


def _write_rows(job_id: int, key: str, rows: list[dict], overwrite: bool, message: str) -> None:
    with session_scope() as s:
        upsert_predictions(s, rows, overwrite=overwrite)
        done = (
            select(func.count())
            .where(Prediction.job_id == job_id, Prediction.scorer == key)
            .scalar_subquery()
        )
        s.execute(update(Job).where(Job.id == job_id).values(progress_done=done, message=message))


def score_chunk(job_id: int, paths: list[str]) -> int:
    """Score some of a job's images and upsert their rows; returns how many images."""
    started = _start_or_skip(job_id)
    if started is None:
        return 0
    scorer, folder = started
    truth = [true_label(Path(p), folder) for p in paths]
    rows = prediction_rows(job_id, scorer, paths, truth)
    errors = sum(r["error"] is not None for r in rows if r["scorer"] == scorer.key)
    message = f"scored a chunk of {len(paths)} ({errors} unreadable)"
    _write_rows(job_id, scorer.key, rows, True, message)
    return len(paths)


def fail_chunk(job_id: int, paths: list[str], reason: str) -> None:
    """A chunk that failed for good: error rows for its images, never over a scored row."""
    started = _start_or_skip(job_id)
    if started is None:
        return
    scorer, folder = started
    reason = NOT_SCORED + (reason.strip().splitlines()[0] if reason.strip() else "unknown")
    truth = [true_label(Path(p), folder) for p in paths]
    rows = failed_rows(job_id, scorer, paths, truth, reason)
    _write_rows(job_id, scorer.key, rows, False, f"a chunk of {len(paths)} failed: {reason}")


def _evaluate(s, job: Job, key: str, ids: dict[str, int]) -> dict[str, Any] | None:  # noqa: ANN001
    """Store and return the scores of one scorer's rows over the labelled, readable images."""
    rows = s.execute(
        select(Prediction.prob, Prediction.label, Prediction.true_label).where(
            Prediction.job_id == job.id,
            Prediction.scorer == key,
            Prediction.true_label.is_not(None),
            Prediction.error.is_(None),
        )
    ).all()
    if not rows:
        return None
    y = [CLASSES_BY_INDEX.index(r.true_label) for r in rows]
    pred = torch.tensor([CLASSES_BY_INDEX.index(r.label) for r in rows])
    scorer = scorer_of(job)
    if scorer.prevalence is not None:
        threshold = PREVALENCE_THRESHOLD
    elif "model_id" in ids:
        threshold = s.get(Model, ids["model_id"]).threshold
    else:
        threshold = scorer.threshold
    scores = binary_scores(y, [r.prob for r in rows], threshold, pred=pred)
    split = "evaluation" if job.params.get("evaluate") else "scored"
    save_evaluation(s, split, job.params["folder"], scores, job.id, **ids)
    return scores


def _summarise(s, job: Job) -> tuple[str, str, dict[str, Any] | None]:  # noqa: ANN001
    scorer = scorer_of(job)
    rows = s.execute(
        select(Prediction.error).where(Prediction.job_id == job.id, Prediction.scorer == scorer.key)
    ).all()
    errors = sum(r.error is not None for r in rows)
    lost = sum(bool(r.error and r.error.startswith(NOT_SCORED)) for r in rows)
    summary = f"{len(rows)} images: {len(rows) - errors} scored, {errors - lost} unreadable"
    if scorer.ensemble_id is not None:
        for model_id in scorer.model_ids:
            _evaluate(s, job, f"model:{model_id}", {"model_id": model_id})
        scores = _evaluate(s, job, scorer.key, {"ensemble_id": scorer.ensemble_id})
    else:
        scores = _evaluate(s, job, scorer.key, {"model_id": scorer.model_ids[0]})
    if scores:
        summary += f"; F1 {scores['f1']:.3f} on {scores['n']} labelled"
    if lost:
        return "partial", f"{summary}; {lost} not scored (chunk failed)", scores
    return "succeeded", summary, scores


def maybe_finish(job_id: int) -> dict[str, Any] | None:
    """Close the job if every image has a row; only one caller ever wins the close."""
    with session_scope() as s:
        job = get_job(s, job_id)
        if job.state != "running" or job.progress_done < job.progress_total:
            return None
        state, summary, scores = _summarise(s, job)
        won = s.execute(
            update(Job)
            .where(Job.id == job_id, Job.state == "running")
            .values(state=state, message=summary, finished_at=utcnow())
        ).rowcount
        if not won:  # another worker closed it first; drop our duplicate evaluation
            s.rollback()
            return None
        return {"state": state, "message": summary, "scores": scores}


def run_scoring_job(
    job_id: int, chunks: list[list[str]], echo: ProgressFn | None = None
) -> dict[str, Any]:
    """Embedded mode: score every chunk in this process, then close the job."""
    total = sum(len(c) for c in chunks)
    try:
        done = 0
        for chunk in chunks:
            score_chunk(job_id, chunk)
            done += len(chunk)
            if echo:
                echo(done, total, f"{done}/{total} images")
        result = maybe_finish(job_id)
    except Exception as exc:
        finish_job(job_id, "failed", f"{type(exc).__name__}: {exc}", traceback.format_exc())
        raise
    if result is None:  # cancelled from elsewhere while we ran
        with session_scope() as s:
            job = get_job(s, job_id)
            return {"state": job.state, "message": job.message, "scores": None}
    return result
