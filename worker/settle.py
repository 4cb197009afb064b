"""Closing a score job once it is over: every unit done, or cancelled with nothing running.

Exactly once, from whichever worker, reaper or CLI gets there first (a conditional update);
closing recounts the rows, stores the scores of each scorer over the labelled images, compares
the batch with its drift reference, and says what the job found (unreadable, lost, flagged for
review, drift).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from db import work
from db.audit import record
from db.columns import REVIEW_REASONS
from db.drift import batch_rows, job_reference, store_drift
from db.job_answers import review_summary
from db.schema import CLASSES_BY_INDEX, FINAL_STATES, Job, scorer_key
from db.scoring import (
    ScorerRef,
    close_job,
    kind_thresholds,
    labelled_rows,
    model_threshold,
    recount,
    scorer_errors,
    scorer_ref,
)
from db.session import session_scope
from db.store import get_job, save_evaluation
from training.data.data_files import kind_code
from training.evaluation.drift import alarm_line, compare_rows
from training.evaluation.metrics import binary_scores, kind_scores
from training.scoring.answers import FOLDER_UNREADABLE, NOT_A_NUMBER, NOT_SCORED
from training.scoring.ensemble import ensemble_kind_threshold
from training.scoring.files import MODEL_FAILED
from training.scoring.prevalence import PREVALENCE_THRESHOLD
from worker.jobs import ScoreParams
from worker.metrics import count_drift_verdict
from worker.site_calibration import calibrate, calibration_of

PARTIAL_BECAUSE = {
    "lost": "{} not scored (chunk failed)",
    "model": "{} the model failed on",
    "folders": "{} folder(s) could not be read (their images are missing)",
    "nan": "{} with a model output that is not a number",
}


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
        ref = scorer_ref(s, job)
        done = recount(s, job, ref.key)
        if job.cancel_requested:
            message = f"cancelled after {done} of {job.progress_total} images"
            if work.cancel_if_idle(s, job, message):
                return {"state": "cancelled", "message": message, "scores": None}
            return None
        state, summary, scores = _summarise(s, job, ref)
        if calibration_of(job) is not None and state != "failed":
            fitted_state, line = calibrate(s, job, ref)
            summary = f"{summary}; {line}"
            state = "failed" if fitted_state == "failed" else state
        verdict = None if state == "failed" else _drift(s, job, ref)
        summary += f"; DRIFT: {alarm_line(job.drift)}" if verdict == "drift" else ""
        if not close_job(s, job_id, state, summary, done):
            s.rollback()  # another worker closed it first; drop our duplicate evaluation
            return None
        if verdict is not None:
            count_drift_verdict(verdict)
        return {"state": state, "message": summary, "scores": scores}


def _summarise(s: Session, job: Job, ref: ScorerRef) -> tuple[str, str, dict[str, Any] | None]:
    counts = _error_counts(scorer_errors(s, job.id, ref.key))
    n_images = counts["rows"] - counts["folders"]
    scored = counts["rows"] - sum(v for k, v in counts.items() if k != "rows")
    summary = f"{n_images} images: {scored} scored, {counts['unreadable']} unreadable"
    if ref.ensemble_id is not None:
        for model_id in ref.model_ids:
            _evaluate(s, job, ref, scorer_key(model_id), {"model_id": model_id})
        scores = _evaluate(s, job, ref, ref.key, {"ensemble_id": ref.ensemble_id})
    else:
        scores = _evaluate(s, job, ref, ref.key, {"model_id": ref.model_ids[0]})
    if scores:
        summary += f"; F1 {scores['f1']:.3f} on {scores['n']} labelled"
    summary += _review_summary(s, job)
    params = ScoreParams.from_job(job)
    if params.threshold is not None:
        summary += f"; threshold {params.threshold:.4g} from the {params.threshold_source}"
    if params.chosen_by:
        summary += f"; scored by {params.chosen_by}"  # an alias or the only model: say which
    why = [text.format(counts[key]) for key, text in PARTIAL_BECAUSE.items() if counts[key]]
    return ("partial" if why else "succeeded"), "; ".join([summary, *why]), scores


def _error_counts(errors: list[str | None]) -> dict[str, int]:
    """Rows, and error rows by what they mean; all but 'unreadable' leave the job `partial`."""
    counts = dict.fromkeys(("unreadable", "lost", "model", "folders", "nan"), 0)
    for error in filter(None, errors):
        if error.startswith(NOT_SCORED):
            counts["lost"] += 1
        elif error.startswith(MODEL_FAILED):
            counts["model"] += 1
        elif error.startswith(FOLDER_UNREADABLE):
            counts["folders"] += 1
        elif error == NOT_A_NUMBER:
            counts["nan"] += 1
        else:
            counts["unreadable"] += 1
    return {"rows": len(errors), **counts}


def _evaluate(
    s: Session, job: Job, ref: ScorerRef, key: str, ids: dict[str, int]
) -> dict[str, Any] | None:
    """Store and return the scores of one scorer's rows over the labelled, readable images."""
    rows = labelled_rows(s, job.id, key)
    if not rows:
        return None
    y = [CLASSES_BY_INDEX.index(r.true_label) for r in rows]
    pred = [CLASSES_BY_INDEX.index(r.label) for r in rows]
    if ref.prevalence is not None:
        threshold = PREVALENCE_THRESHOLD
    elif ref.site_profile is not None and "model_id" in ids:
        threshold = ref.site_profile["threshold"]
    elif "model_id" in ids:
        threshold = model_threshold(s, ids["model_id"])
    else:
        threshold = ref.threshold
    scores = binary_scores(y, [r.prob for r in rows], threshold, pred=pred)
    scores.update(_kind_scores(s, rows, ref, ids))
    params = ScoreParams.from_job(job)
    split = "evaluation" if params.evaluate else "scored"
    save_evaluation(s, split, params.folder, scores, job.id, **ids)
    return scores


def _kind_scores(s: Session, rows: list, ref: ScorerRef, ids: dict[str, int]) -> dict[str, Any]:
    """Bacterial vs viral over the PNEUMONIA images whose file name gives the kind (the
    Kermany naming), when the scorer answered P(VIRAL | PNEUMONIA); else nothing."""
    codes = [(kind_code(r.path, int(r.true_label == "PNEUMONIA")), r.prob_viral) for r in rows]
    known = [(code, p) for code, p in codes if code >= 0 and p is not None]
    if not known:
        return {}
    if "ensemble_id" in ids:
        cut = ensemble_kind_threshold(kind_thresholds(s, ref.model_ids), ref.weights)
    else:
        cut = kind_thresholds(s, [ids["model_id"]])[0]
        site_cut = (ref.site_profile or {}).get("kind_threshold")
        cut = 0.5 if cut is None else (cut if site_cut is None else site_cut)
    return kind_scores([k for k, _ in known], [p for _, p in known], cut)


def _drift(s: Session, job: Job, ref: ScorerRef) -> str:
    """The job's batch against its reference (training.evaluation.drift), stored on the job;
    an alarm is also an audit entry. Returns the verdict."""
    reference = job_reference(s, job)
    result = compare_rows(reference.sample, batch_rows(s, job.id, ref.key), reference.note)
    store_drift(s, job, result | {"reference": reference.what})
    if result["verdict"] == "drift":
        detail = {"reference": reference.what, "alarms": alarm_line(result)}
        site = reference.site
        record(s, "drift-alarm", job_id=job.id, model_id=job.model_id, site=site, detail=detail)
    return result["verdict"]


def _review_summary(s: Session, job: Job) -> str:
    """'; 12 flagged for review (not-cxr 2, low-confidence 10)', or '' when none was."""
    review = review_summary(s, job)
    if not review or not review["flagged"]:
        return ""
    why = ", ".join(f"{r} {review[r]}" for r in REVIEW_REASONS if review[r])
    return f"; {review['flagged']} flagged for review ({why})"
