"""The scoring job: one prediction row per image, written chunk by chunk, then scores.

Both modes run the same functions: embedded mode loops over the chunks in the CLI process;
queued mode sends one task per chunk. `score_chunk` upserts on (job, model, path), so a
redelivered or retried chunk never doubles a row, and progress is the count of rows written.
Whichever chunk writes the last missing row closes the job (`maybe_finish`), exactly once.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update

from db.schema import Job, Prediction, utcnow
from db.session import session_scope
from db.store import finish_job, get_job, save_evaluation, upsert_predictions
from training.data_files import CLASSES, label_from_path
from worker.progress import ProgressFn

NOT_SCORED = "not scored: "  # error prefix of rows whose chunk failed for good


def true_label(path: Path, folder: Path) -> str | None:
    """NORMAL/PNEUMONIA when the scored folder, or a folder inside it, is named so."""
    inside = path.relative_to(folder.parent) if path.is_relative_to(folder.parent) else path
    label = label_from_path(inside)
    return None if label is None else CLASSES[label]


def _start_or_skip(job_id: int) -> tuple[int, Path] | None:
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
        return job.model_id, Path(job.params["folder"])


def _write_rows(job_id: int, rows: list[dict[str, Any]], overwrite: bool, message: str) -> None:
    with session_scope() as s:
        upsert_predictions(s, rows, overwrite=overwrite)
        done = select(func.count()).where(Prediction.job_id == job_id).scalar_subquery()
        s.execute(update(Job).where(Job.id == job_id).values(progress_done=done, message=message))


def score_chunk(job_id: int, paths: list[str]) -> int:
    """Score some of a job's images and upsert their rows; returns how many were written."""
    started = _start_or_skip(job_id)
    if started is None:
        return 0
    model_id, folder = started
    from training.inference import score_files  # torch loads only where images are scored
    from worker.model_cache import load_bundle

    rows = [
        {
            "job_id": job_id,
            "model_id": model_id,
            "path": r.path,
            "prob": r.prob,
            "label": None if r.label is None else CLASSES[r.label],
            "true_label": true_label(Path(r.path), folder),
            "error": r.error,
        }
        for r in score_files(load_bundle(model_id), paths)
    ]
    errors = sum(r["error"] is not None for r in rows)
    _write_rows(job_id, rows, True, f"scored a chunk of {len(rows)} ({errors} unreadable)")
    return len(rows)


def fail_chunk(job_id: int, paths: list[str], reason: str) -> None:
    """A chunk that failed for good: error rows for its images, never over a scored row."""
    started = _start_or_skip(job_id)
    if started is None:
        return
    model_id, folder = started
    reason = NOT_SCORED + reason.strip().splitlines()[0] if reason.strip() else NOT_SCORED
    rows = [
        {
            "job_id": job_id,
            "model_id": model_id,
            "path": p,
            "prob": None,
            "label": None,
            "true_label": true_label(Path(p), folder),
            "error": reason,
        }
        for p in paths
    ]
    _write_rows(job_id, rows, False, f"a chunk of {len(paths)} failed: {reason}")


def _summarise(s, job: Job) -> tuple[str, str, dict[str, Any] | None]:  # noqa: ANN001
    rows = s.execute(
        select(Prediction.prob, Prediction.true_label, Prediction.error).where(
            Prediction.job_id == job.id, Prediction.model_id == job.model_id
        )
    ).all()
    labelled = [(r.true_label, r.prob) for r in rows if r.true_label and r.error is None]
    errors = sum(r.error is not None for r in rows)
    lost = sum(bool(r.error and r.error.startswith(NOT_SCORED)) for r in rows)
    summary = f"{len(rows)} images: {len(rows) - errors} scored, {errors - lost} unreadable"
    scores = None
    if labelled:
        from training.metrics import binary_scores
        from worker.model_cache import load_bundle

        y = [CLASSES.index(t) for t, _ in labelled]
        scores = binary_scores(y, [p for _, p in labelled], load_bundle(job.model_id).threshold)
        save_evaluation(s, job.model_id, "scored", job.params["folder"], scores, job.id)
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
