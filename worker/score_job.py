"""The scoring job: one prediction row per image and scorer, written unit by unit, then scores.

Both modes run the same functions: embedded mode loops over the job's units in the CLI process;
queued mode sends one task per unit. A unit (db.work) is a chunk of paths a worker must hold a
lease on to score; its rows and its `done` mark commit together. Rows are upserted on
(job, scorer, path), so a redelivered or re-sent unit never doubles a row. `settle` closes the
job once every unit is done (or it was cancelled and nothing runs), exactly once, from whichever
worker, reaper or CLI gets there first.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import torch
from sqlalchemy import case, func, select, update

from db import work
from db.columns import REVIEW_REASONS
from db.queries import review_summary
from db.schema import CLASSES_BY_INDEX, FINAL_STATES, Job, Model, Prediction, utcnow
from db.session import session_scope
from db.store import (
    finish_job,
    get_job,
    save_evaluation,
    upsert_heatmaps,
    upsert_predictions,
)
from training.data.data_files import kind_code, label_from_path
from training.evaluation.metrics import binary_scores, kind_scores
from worker.lease import hold
from worker.progress import ProgressFn
from worker.scorers import (
    NOT_A_NUMBER,
    PREVALENCE_THRESHOLD,
    Scorer,
    add_identities,
    failed_rows,
    heatmap_rows,
    member_and_combined_probs,
    prediction_rows,
    scorer_of,
    stored_kind_threshold,
)

NOT_SCORED = "not scored: "  # error prefix of rows whose chunk failed for good
FOLDER_UNREADABLE = "folder not readable: "  # error prefix of a row standing for a whole folder


def true_label(path: Path, folder: Path) -> str | None:
    """NORMAL/PNEUMONIA when the scored folder, or a folder inside it, is named so."""
    inside = path.relative_to(folder.parent) if path.is_relative_to(folder.parent) else path
    label = label_from_path(inside)
    return None if label is None else CLASSES_BY_INDEX[label]


def _start_or_skip(job_id: int) -> tuple[Scorer, Path, str] | None:
    """Mark the job running; None when it ended or a cancel was asked (`settle` closes it).
    Returns (scorer, folder, which images get heatmaps: none, pneumonia (the PNEUMONIA calls)
    or all)."""
    with session_scope() as s:
        job = get_job(s, job_id)
        if job.cancel_requested or job.state in FINAL_STATES:
            return None
        if job.state == "pending":
            job.state, job.started_at = "running", utcnow()
        return scorer_of(job), Path(job.params["folder"]), job.params.get("explain", "none")


def _write_rows(
    job_id: int,
    unit_id: int,
    key: str,
    rows: list[dict],
    overwrite: bool,
    heatmaps: list[dict] = (),
) -> None:
    """The unit's rows (and heatmaps) and its done mark in one transaction; progress is a
    fresh row count."""
    with session_scope() as s:
        upsert_predictions(s, rows, overwrite=overwrite)
        upsert_heatmaps(s, heatmaps)
        work.finish_unit(s, unit_id)
        # Approximate under concurrency (a chunk committing now is missed; `settle` recounts),
        # and never lowered: a count taken before another chunk committed may land after it.
        done = (
            select(func.count())
            .where(Prediction.job_id == job_id, Prediction.scorer == key)
            .scalar_subquery()
        )
        higher = case((done > Job.progress_done, done), else_=Job.progress_done)
        s.execute(update(Job).where(Job.id == job_id).values(progress_done=higher))


def score_unit(unit_id: int) -> int:
    """Score one unit's images and store their rows; returns how many images (0: skipped)."""
    with hold(unit_id) as lease:
        if lease is None:  # done already, or another worker holds it now
            return 0
        started = _start_or_skip(lease.job_id)
        if started is None:
            return 0
        scorer, folder, explain = started
        truth = [true_label(Path(p), folder) for p in lease.paths]
        answers = member_and_combined_probs(scorer, lease.paths, explain != "none")
        rows = prediction_rows(lease.job_id, scorer, lease.paths, truth, answers)
        add_identities(rows)
        maps = heatmap_rows(lease.job_id, lease.paths, answers)
        if explain == "pneumonia":  # maps of the images the job's answer calls PNEUMONIA
            called = {
                r["path"] for r in rows if r["scorer"] == scorer.key and r["label"] == "PNEUMONIA"
            }
            maps = [m for m in maps if m["path"] in called]
        _write_rows(lease.job_id, unit_id, scorer.key, rows, True, maps)
        return len(lease.paths)


def fail_unit(unit_id: int, reason: str) -> None:
    """A unit that failed for good: error rows for its images, never over a scored row."""
    with hold(unit_id) as lease:
        if lease is None:
            return
        started = _start_or_skip(lease.job_id)
        if started is None:
            return
        scorer, folder, _ = started
        reason = NOT_SCORED + (reason.strip().splitlines()[0] if reason.strip() else "unknown")
        truth = [true_label(Path(p), folder) for p in lease.paths]
        rows = failed_rows(lease.job_id, scorer, lease.paths, truth, reason)
        _write_rows(lease.job_id, unit_id, scorer.key, rows, False)


def _evaluate(s, job: Job, key: str, ids: dict[str, int]) -> dict[str, Any] | None:  # noqa: ANN001
    """Store and return the scores of one scorer's rows over the labelled, readable images."""
    rows = s.execute(
        select(
            Prediction.prob,
            Prediction.label,
            Prediction.true_label,
            Prediction.prob_viral,
            Prediction.path,
        ).where(
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
    scores.update(_kind_scores(s, rows, scorer, ids))
    split = "evaluation" if job.params.get("evaluate") else "scored"
    save_evaluation(s, split, job.params["folder"], scores, job.id, **ids)
    return scores


def _kind_scores(s, rows: list, scorer: Scorer, ids: dict[str, int]) -> dict[str, Any]:  # noqa: ANN001
    """Bacterial vs viral over the PNEUMONIA images whose file name gives the kind (the
    Kermany naming), when the scorer answered P(VIRAL | PNEUMONIA); else nothing."""
    codes = [(kind_code(r.path, int(r.true_label == "PNEUMONIA")), r.prob_viral) for r in rows]
    known = [(code, p) for code, p in codes if code >= 0 and p is not None]
    if not known:
        return {}
    own = scorer if "ensemble_id" in ids else Scorer([ids["model_id"]])
    cut = stored_kind_threshold(s, own)
    return kind_scores([k for k, _ in known], [p for _, p in known], cut)


def _error_counts(errors: list[str | None]) -> dict[str, int]:
    """Error rows by what they mean; all but 'unreadable' leave the job `partial`."""
    counts = dict.fromkeys(("unreadable", "lost", "folders", "nan"), 0)
    for error in filter(None, errors):
        if error.startswith(NOT_SCORED):
            counts["lost"] += 1
        elif error.startswith(FOLDER_UNREADABLE):
            counts["folders"] += 1
        elif error == NOT_A_NUMBER:
            counts["nan"] += 1
        else:
            counts["unreadable"] += 1
    return counts


PARTIAL_BECAUSE = {
    "lost": "{} not scored (chunk failed)",
    "folders": "{} folder(s) could not be read (their images are missing)",
    "nan": "{} with a model output that is not a number",
}


def _summarise(s, job: Job) -> tuple[str, str, dict[str, Any] | None]:  # noqa: ANN001
    scorer = scorer_of(job)
    errors = s.scalars(
        select(Prediction.error).where(Prediction.job_id == job.id, Prediction.scorer == scorer.key)
    ).all()
    counts = _error_counts(errors)
    n_images = len(errors) - counts["folders"]
    scored = len(errors) - sum(counts.values())
    summary = f"{n_images} images: {scored} scored, {counts['unreadable']} unreadable"
    if scorer.ensemble_id is not None:
        for model_id in scorer.model_ids:
            _evaluate(s, job, f"model:{model_id}", {"model_id": model_id})
        scores = _evaluate(s, job, scorer.key, {"ensemble_id": scorer.ensemble_id})
    else:
        scores = _evaluate(s, job, scorer.key, {"model_id": scorer.model_ids[0]})
    if scores:
        summary += f"; F1 {scores['f1']:.3f} on {scores['n']} labelled"
    summary += _review_summary(s, job)
    why = [text.format(counts[key]) for key, text in PARTIAL_BECAUSE.items() if counts[key]]
    return ("partial" if why else "succeeded"), "; ".join([summary, *why]), scores


def _review_summary(s, job: Job) -> str:  # noqa: ANN001
    """'; 12 flagged for review (not-cxr 2, low-confidence 10)', or '' when none was."""
    review = review_summary(s, job)
    if not review or not review["flagged"]:
        return ""
    why = ", ".join(f"{r} {review[r]}" for r in REVIEW_REASONS if review[r])
    return f"; {review['flagged']} flagged for review ({why})"


def record_unreadable_folders(job_id: int, folders: list[tuple[str, str]]) -> None:
    """An error row per folder the scan could not read: counted, reported, never silent."""
    with session_scope() as s:
        scorer = scorer_of(get_job(s, job_id))
        rows = [
            row
            for path, reason in folders
            for row in failed_rows(job_id, scorer, [path], [None], FOLDER_UNREADABLE + reason)
        ]
        upsert_predictions(s, rows, overwrite=False)


def _recount(s, job: Job) -> int:  # noqa: ANN001
    key = scorer_of(job).key
    done = s.scalar(
        select(func.count()).where(Prediction.job_id == job.id, Prediction.scorer == key)
    )
    job.progress_done = done
    return done


def settle(job_id: int) -> dict[str, Any] | None:
    """Close the job if it is over: every unit done, or cancelled with no unit running.

    Only one caller wins the close (a conditional update); the others get None.
    """
    with session_scope() as s:
        job = get_job(s, job_id)
        if job.state in FINAL_STATES:
            return None
        # Units first, rows after: under READ COMMITTED each query sees what had committed when
        # it started, so rows counted after "no unit open" include every done unit's rows.
        still_open = work.open_units(s, job_id)
        if still_open and not job.cancel_requested:
            return None  # the common case after a chunk: no recount (each chunk counted already)
        done = _recount(s, job)
        if job.cancel_requested:
            message = f"cancelled after {done} of {job.progress_total} images"
            if work.cancel_if_idle(s, job, message):
                return {"state": "cancelled", "message": message, "scores": None}
            return None
        state, summary, scores = _summarise(s, job)
        won = s.execute(
            update(Job)
            .where(Job.id == job_id, Job.state.not_in(FINAL_STATES))
            .values(state=state, message=summary, finished_at=utcnow(), progress_done=done)
        ).rowcount
        if not won:  # another worker closed it first; drop our duplicate evaluation
            s.rollback()
            return None
        return {"state": state, "message": summary, "scores": scores}


def plan_units(job_id: int, chunks: list[list[str]]) -> None:
    """Cut the job into its units (once; a job that has units keeps them)."""
    with session_scope() as s:
        job = get_job(s, job_id)
        if not work.unit_ids(s, job_id, ("queued", "running", "done")):
            work.create_units(s, job, chunks)


def run_scoring_job(
    job_id: int, chunks: list[list[str]] | None = None, echo: ProgressFn | None = None
) -> dict[str, Any]:
    """Embedded mode: score every unit in this process, then close the job.

    Ctrl-C (or any error) ends the job instead of leaving it `running` with no one at work.
    """
    if chunks is not None:
        plan_units(job_id, chunks)
    with session_scope() as s:
        units, total = work.unit_ids(s, job_id), get_job(s, job_id).progress_total
    try:
        done = 0
        for unit_id in units:
            done += score_unit(unit_id)
            if echo:
                echo(done, total, f"{done}/{total} images")
        result = settle(job_id)
    except KeyboardInterrupt:
        finish_job(job_id, "cancelled", f"interrupted after {done} of {total} images")
        raise
    except Exception as exc:
        finish_job(job_id, "failed", f"{type(exc).__name__}: {exc}", traceback.format_exc())
        raise
    if result is None:  # cancelled from elsewhere while we ran
        with session_scope() as s:
            job = get_job(s, job_id)
            return {"state": job.state, "message": job.message, "scores": None}
    return result
