"""The scoring job: every image below a folder -> one prediction row per image, then scores.

Work is split into chunks of image paths. `score_chunk` is idempotent (rows are upserted on
job/model/path), so the queue may redeliver or retry a chunk without doubling any row.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

from sqlalchemy import select

from db.schema import Prediction
from db.session import session_scope
from db.store import (
    add_progress,
    finish_job,
    get_job,
    mark_running,
    save_evaluation,
    upsert_predictions,
)
from training.data_files import CLASSES, label_from_path, list_images
from training.inference import score_files
from training.metrics import binary_scores
from worker.model_cache import load_bundle
from worker.progress import ProgressFn

DEFAULT_CHUNK_SIZE = 256


def true_label(path: Path, folder: Path) -> str | None:
    """NORMAL/PNEUMONIA when the scored folder, or a folder inside it, is named so."""
    label = label_from_path(path.relative_to(folder.parent))
    return None if label is None else CLASSES[label]


def plan_chunks(job_id: int) -> list[list[str]]:
    """The job's images, listed now and cut into chunks of the job's chunk size."""
    with session_scope() as s:
        params = get_job(s, job_id).params
    paths = [str(p) for p in list_images(params["folder"])]
    size = int(params.get("chunk_size") or DEFAULT_CHUNK_SIZE)
    return [paths[i : i + size] for i in range(0, len(paths), size)]


def score_chunk(job_id: int, paths: list[str]) -> dict[str, int]:
    """Score some of a job's images and upsert their rows; returns counts for progress."""
    with session_scope() as s:
        job = get_job(s, job_id)
        if job.cancel_requested:
            return {"scored": 0, "errors": 0, "skipped": len(paths)}
        model_id, folder = job.model_id, Path(job.params["folder"])
    bundle = load_bundle(model_id)
    rows = []
    for r in score_files(bundle, paths):
        rows.append({
            "job_id": job_id, "model_id": model_id, "path": r.path, "prob": r.prob,
            "label": None if r.label is None else CLASSES[r.label],
            "true_label": true_label(Path(r.path), folder), "error": r.error,
        })  # fmt: skip
    with session_scope() as s:
        upsert_predictions(s, rows)
    errors = sum(r["error"] is not None for r in rows)
    add_progress(job_id, len(rows), f"scored {len(rows)} images ({errors} unreadable)")
    return {"scored": len(rows) - errors, "errors": errors, "skipped": 0}


def finish_scoring(job_id: int) -> dict[str, Any]:
    """Count the rows, store scores over the labelled ones, and close the job."""
    with session_scope() as s:
        job = get_job(s, job_id)
        rows = s.execute(
            select(Prediction.prob, Prediction.true_label, Prediction.error)
            .where(Prediction.job_id == job_id, Prediction.model_id == job.model_id)
        ).all()  # fmt: skip
        labelled = [(r.true_label, r.prob) for r in rows if r.true_label and r.error is None]
        scores = None
        if labelled:
            y = [CLASSES.index(t) for t, _ in labelled]
            scores = binary_scores(y, [p for _, p in labelled], load_bundle(job.model_id).threshold)
            save_evaluation(s, job.model_id, "scored", job.params["folder"], scores, job_id)
        cancelled, expected = job.cancel_requested, job.progress_total
    errors = sum(r.error is not None for r in rows)
    summary = f"{len(rows)} images: {len(rows) - errors} scored, {errors} unreadable"
    if scores:
        summary += f"; F1 {scores['f1']:.3f} on {scores['n']} labelled"
    state = "succeeded"
    if cancelled:
        state = "cancelled"
    elif len(rows) < expected:
        state, summary = "partial", f"{summary}; {expected - len(rows)} never scored"
    finish_job(job_id, state, summary)
    return {"state": state, "rows": len(rows), "errors": errors, "scores": scores}


def run_scoring_job(job_id: int, echo: ProgressFn | None = None) -> dict[str, Any]:
    """Embedded mode: plan, score every chunk in this process, finish."""
    try:
        chunks = plan_chunks(job_id)
        total = sum(len(c) for c in chunks)
        mark_running(job_id, total, f"scoring {total} images")
        done = 0
        for chunk in chunks:
            score_chunk(job_id, chunk)
            done += len(chunk)
            if echo:
                echo(done, total, f"{done}/{total} images")
        return finish_scoring(job_id)
    except Exception as exc:
        finish_job(job_id, "failed", f"{type(exc).__name__}: {exc}", traceback.format_exc())
        raise


def count_images(folder: str | Path) -> int:
    return len(list_images(folder))
