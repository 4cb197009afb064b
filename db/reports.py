"""The rows behind every `cxrq report`: models, ensembles, jobs, a job, its predictions, a heatmap.

Each report function returns a list of flat dicts (or one dict) with stable keys, so the CLI can
print the same data as a table, CSV or JSON; `cxrq report NAME` calls NAME_report here.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.aliases import aliases_of
from db.columns import IDENTITY_COLUMNS, KIND_COLUMNS, REVIEW_COLUMNS, SCORE_COLUMNS
from db.job_answers import answering_scorer, prediction_counts, review_summary
from db.lookups import latest_evaluation, resolve_job
from db.schema import Ensemble, Evaluation, Heatmap, Job, Model, Prediction, WorkUnit, scorer_key
from db.store import NotFoundError


def _scores(evaluation: Evaluation | None, prefix: str = "") -> dict[str, Any]:
    columns = (*SCORE_COLUMNS, *KIND_COLUMNS)
    return {f"{prefix}{k}": getattr(evaluation, k) if evaluation else None for k in columns}


def _val_and_test(
    session: Session, model_id: int | None = None, ensemble_id: int | None = None
) -> dict[str, Any]:
    """Flat val_* and test_* scores (None where missing): the external test/ split is judged
    beside validation, which flatters every model."""
    return {
        **_scores(latest_evaluation(session, "validation", model_id, ensemble_id), "val_"),
        **_scores(latest_evaluation(session, "test", model_id, ensemble_id), "test_"),
    }


def models_report(session: Session) -> list[dict[str, Any]]:
    """One row per model with its validation and test scores and every other evaluation of it."""
    rows = []
    for m in session.scalars(select(Model).order_by(Model.id)):
        rows.append(
            {
                "id": m.id,
                "name": m.name,
                "arch": m.arch,
                "preset": m.preset,
                "img_size": m.img_size,
                "epochs": m.config.get("epochs"),
                "seed": m.config.get("seed"),
                "train_minutes": round(m.train_seconds / 60, 2),
                "created_at": m.created_at.isoformat(timespec="seconds"),
                "aliases": ",".join(aliases_of(session, m.id)) or None,
                **_val_and_test(session, model_id=m.id),
                "evaluations": _other_evaluations(session, Evaluation.model_id == m.id),
            }
        )
    return rows


def _other_evaluations(session: Session, owner: Any) -> list[dict[str, Any]]:
    """Every evaluation of one model or ensemble besides its validation scores."""
    found = session.scalars(
        select(Evaluation).where(owner, Evaluation.split != "validation").order_by(Evaluation.id)
    ).all()
    return [evaluation_row(e) for e in found]


def evaluation_row(e: Evaluation) -> dict[str, Any]:
    return {
        "split": e.split,
        "dataset": e.dataset,
        "job_id": e.job_id,
        "scorer": scorer_key(e.model_id, e.ensemble_id),
        **_scores(e),
    }


def ensembles_report(session: Session) -> list[dict[str, Any]]:
    """One row per ensemble: members and weights, threshold, validation, test and other scores."""
    rows = []
    for e in session.scalars(select(Ensemble).order_by(Ensemble.id)):
        members = ", ".join(f"{m['model_id']}={m['weight']:.3g}" for m in e.members)
        kept = {m["model_id"] for m in e.members}
        dropped = [i for i in e.params.get("candidates", []) if i not in kept]
        rows.append(
            {
                "id": e.id,
                "name": e.name,
                "method": e.method,
                "members": members,
                "dropped": ", ".join(str(i) for i in dropped),
                "threshold": e.threshold,
                "fitted_at": e.fitted_at.isoformat(timespec="seconds") if e.fitted_at else None,
                "validation": e.params.get("validation"),
                **_val_and_test(session, ensemble_id=e.id),
                "evaluations": _other_evaluations(session, Evaluation.ensemble_id == e.id),
            }
        )
    return rows


def job_row(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "kind": job.kind,
        "state": job.state,
        "model_id": job.model_id,
        "done": job.progress_done,
        "total": job.progress_total,
        "message": job.message,
        "error": job.error,
        # Score jobs: the threshold that decided, and the site profile it came from.
        "threshold": job.params.get("threshold"),
        "site_profile_id": job.params.get("site_profile_id"),
        "threshold_source": job.params.get("threshold_source"),
        "created_at": job.created_at.isoformat(timespec="seconds"),
        "finished_at": job.finished_at.isoformat(timespec="seconds") if job.finished_at else None,
    }


def job_evaluations(session: Session, job_id: int) -> list[Evaluation]:
    """The evaluations a job stored, in the order it stored them."""
    query = select(Evaluation).where(Evaluation.job_id == job_id).order_by(Evaluation.id)
    return list(session.scalars(query))


def models_by_id(session: Session) -> dict[int, Model]:
    """Every model row (its config and training history beside the report's flat row)."""
    return {m.id: m for m in session.scalars(select(Model))}


def jobs_report(session: Session, limit: int = 50) -> list[dict[str, Any]]:
    jobs = session.scalars(select(Job).order_by(Job.id.desc()).limit(limit)).all()
    return [job_row(j) for j in jobs]


def job_report(session: Session, ref: str) -> dict[str, Any]:
    """One job with its parameters and the evaluations it produced."""
    job = resolve_job(session, ref)
    evaluations = job_evaluations(session, job.id)
    counts = prediction_counts(session, job.id)
    review = review_summary(session, job) if job.kind == "score" else None
    return {
        **job_row(job),
        "params": job.params,
        **counts,
        "review": review,
        "drift": job.drift,  # training.evaluation.drift.compare's result, for score jobs
        "devices": unit_devices(session, job.id),
        "evaluations": [evaluation_row(e) for e in evaluations],
    }


def unit_devices(session: Session, job_id: int) -> dict[str, int]:
    """How many of the job's work units each device ran ("cpu", "cuda:0"), as last claimed."""
    query = (
        select(WorkUnit.device, func.count())
        .where(WorkUnit.job_id == job_id, WorkUnit.device.is_not(None))
        .group_by(WorkUnit.device)
        .order_by(WorkUnit.device)
    )
    return {device: n for device, n in session.execute(query)}


def predictions_report(
    session: Session, ref: str, review_only: bool = False
) -> list[dict[str, Any]]:
    """A job's prediction rows by path; review_only: the flagged calls of the job's answering
    scorer (an ensemble's own, not its members'), worst first."""
    job = resolve_job(session, ref)
    query = (
        select(Prediction, func.coalesce(Model.name, Ensemble.name))
        .outerjoin(Model, Model.id == Prediction.model_id)
        .outerjoin(Ensemble, Ensemble.id == Prediction.ensemble_id)
        .where(Prediction.job_id == job.id)
    )
    if review_only:
        query = query.where(
            Prediction.review.is_(True), Prediction.scorer == answering_scorer(job)
        ).order_by(Prediction.review_score.desc(), Prediction.path, Prediction.scorer)
    else:
        query = query.order_by(Prediction.path, Prediction.scorer)
    rows = session.execute(query).all()
    return [
        {
            "job_id": p.job_id,
            "scorer": p.scorer,
            "model_id": p.model_id,
            "ensemble_id": p.ensemble_id,
            "model": name,
            "path": p.path,
            "prob_pneumonia": p.prob,
            "label": p.label,
            "true_label": p.true_label,
            "prob_viral": p.prob_viral,
            "kind": p.kind,
            "error": p.error,
            "threshold": p.threshold,
            "site_profile_id": p.site_profile_id,
            **{column: getattr(p, column) for column in (*REVIEW_COLUMNS, *IDENTITY_COLUMNS)},
            "shadow": p.shadow,  # a shadow model's row: stored beside, never deciding
            "brightness": p.brightness,
        }
        for p, name in rows
    ]


def _no_heatmap(session: Session, job_id: int, key: str, path: str) -> None:
    """Raise the one-line reason a job has no map for path: none for this scorer at all, only
    its members' (an ensemble whose members see different crops), or none for this image."""
    scorers = session.scalars(select(Heatmap.scorer).where(Heatmap.job_id == job_id).distinct())
    scorers = sorted(scorers)
    if key in scorers:
        raise NotFoundError(f"no heatmap in job {job_id} for {path!r}; give the image's full path")
    if scorers:
        raise NotFoundError(
            f"job {job_id} stored no heatmaps for {key}, only for {', '.join(scorers)}; "
            "pass --scorer"
        )
    raise NotFoundError(
        f"job {job_id} stored no heatmaps for {key}; score with `cxrq score FOLDER --explain`"
    )


def heatmap_report(
    session: Session, ref: str, path: str, scorer: str | None = None
) -> dict[str, Any]:
    """The stored heatmap of one image of a scoring job, with the image's prediction row.
    `path` is the stored (absolute) path, or a unique ending of one (e.g. the file name)."""
    job = resolve_job(session, ref)
    key = scorer or answering_scorer(job)
    mine = select(Heatmap).where(Heatmap.job_id == job.id, Heatmap.scorer == key)
    # Only the matching rows are read: a large job holds a map for every image.
    matches = session.scalars(mine.where(Heatmap.path == path)).all()
    if not matches:
        ending = "/" + path.lstrip("/")
        matches = session.scalars(mine.where(Heatmap.path.endswith(ending, autoescape=True))).all()
    if not matches:
        _no_heatmap(session, job.id, key, path)
    if len(matches) > 1:
        raise NotFoundError(
            f"{len(matches)} heatmaps in job {job.id} for {path!r}; give the image's full path"
        )
    h = matches[0]
    prediction = session.scalars(
        select(Prediction).where(
            Prediction.job_id == job.id, Prediction.scorer == key, Prediction.path == h.path
        )
    ).first()
    return {
        "job_id": job.id,
        "scorer": key,
        "path": h.path,
        "height": h.height,
        "width": h.width,
        "grid": h.grid,
        "crop": h.crop,
        "method": h.method,
        "prob_pneumonia": prediction.prob if prediction else None,
        "label": prediction.label if prediction else None,
        "prob_viral": prediction.prob_viral if prediction else None,
        "kind": prediction.kind if prediction else None,
    }
