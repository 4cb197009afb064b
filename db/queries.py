"""Reads: resolving a model reference and the rows behind every `cxrq report`.

Each report function returns a list of flat dicts with stable keys, so the CLI can print the
same data as a table, CSV or JSON.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.columns import IDENTITY_COLUMNS, KIND_COLUMNS, REVIEW_COLUMNS, REVIEW_REASONS, SCORE_COLUMNS
from db.schema import Ensemble, Evaluation, Heatmap, Job, Model, Prediction, scorer_key
from db.store import NotFoundError, get_job


def _latest(
    session: Session, split: str, model_id: int | None = None, ensemble_id: int | None = None
) -> Evaluation | None:
    """The newest evaluation of a model or an ensemble on one split (a refit adds another)."""
    owner = (
        Evaluation.model_id == model_id
        if ensemble_id is None
        else Evaluation.ensemble_id == ensemble_id
    )
    return session.scalars(
        select(Evaluation).where(owner, Evaluation.split == split).order_by(Evaluation.id.desc())
    ).first()


def _best_by_val_f1(session: Session, models: list[Model]) -> Model:
    """Best validation F1, compared only on one validation set: the largest one.

    F1 on different validation sets is not comparable (a 4-image quick run scores 1.0 on n=2),
    so only models validated on the same images as the largest validation set compete.
    """
    vals = {m.id: _latest(session, "validation", m.id) for m in models}
    validated = [v for v in vals.values() if v is not None]
    if not validated:
        return max(models, key=lambda m: m.id)  # nothing to compare: the newest
    largest = max(validated, key=lambda v: (v.n, v.id))
    same_set = [
        m for m in models if (v := vals[m.id]) and (v.dataset, v.n) == (largest.dataset, largest.n)
    ]
    return max(same_set, key=lambda m: (vals[m.id].f1, m.id))  # ties: the newest


def resolve_model(session: Session, ref: str | None) -> Model:
    """A model by id, by name, or by arch; several matches (or no ref) -> best validation F1
    on the largest shared validation set."""
    if ref is not None and ref.isdigit():
        model = session.get(Model, int(ref))
        if model is None:
            raise NotFoundError(f"no model with id {ref}; `cxrq report models` lists them")
        return model
    query = select(Model)
    if ref is not None:
        named = session.scalars(query.where(Model.name == ref)).all()
        candidates = list(named or session.scalars(query.where(Model.arch == ref)).all())
    else:
        candidates = list(session.scalars(query).all())
    if not candidates:
        hint = f"no model named {ref!r}" if ref else "no trained model yet"
        raise NotFoundError(f"{hint}; train one with `cxrq train --arch googlenet`")
    return _best_by_val_f1(session, candidates)


def resolve_ensemble(session: Session, name: str) -> Ensemble:
    ensemble = session.scalars(select(Ensemble).where(Ensemble.name == name)).first()
    if ensemble is None:
        raise NotFoundError(f"no ensemble named {name!r}; `cxrq report ensembles` lists them")
    return ensemble


def resolve_scorer(session: Session, ref: str | None) -> Model | Ensemble:
    """A model (id, name, arch), or an ensemble by name or as 'ensemble:NAME'."""
    if ref and ref.startswith("ensemble:"):
        return resolve_ensemble(session, ref.removeprefix("ensemble:"))
    try:
        return resolve_model(session, ref)
    except NotFoundError:
        if ref and not ref.isdigit():
            ensemble = session.scalars(select(Ensemble).where(Ensemble.name == ref)).first()
            if ensemble is not None:
                return ensemble
        raise


def resolve_job(session: Session, ref: str) -> Job:
    """A job by id, or 'latest' / 'latest-score' / 'latest-train'."""
    if ref.isdigit():
        return get_job(session, int(ref))
    if ref.startswith("latest"):
        query = select(Job).order_by(Job.id.desc())
        kind = ref.removeprefix("latest").removeprefix("-")
        if kind:
            query = query.where(Job.kind == kind)
        job = session.scalars(query).first()
        if job is None:
            raise NotFoundError("no jobs yet")
        return job
    raise NotFoundError(f"{ref!r} is not a job id (a number, or 'latest')")


def _scores(evaluation: Evaluation | None, prefix: str = "") -> dict[str, Any]:
    columns = (*SCORE_COLUMNS, *KIND_COLUMNS)
    return {f"{prefix}{k}": getattr(evaluation, k) if evaluation else None for k in columns}


def _val_and_test(
    session: Session, model_id: int | None = None, ensemble_id: int | None = None
) -> dict[str, Any]:
    """Flat val_* and test_* scores (None where missing): the external test/ split is judged
    beside validation, which flatters every model."""
    return {
        **_scores(_latest(session, "validation", model_id, ensemble_id), "val_"),
        **_scores(_latest(session, "test", model_id, ensemble_id), "test_"),
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
        "scorer": f"ensemble:{e.ensemble_id}" if e.ensemble_id else f"model:{e.model_id}",
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
        "created_at": job.created_at.isoformat(timespec="seconds"),
        "finished_at": job.finished_at.isoformat(timespec="seconds") if job.finished_at else None,
    }


def jobs_report(session: Session, limit: int = 50) -> list[dict[str, Any]]:
    jobs = session.scalars(select(Job).order_by(Job.id.desc()).limit(limit)).all()
    return [job_row(j) for j in jobs]


def job_report(session: Session, ref: str) -> dict[str, Any]:
    """One job with its parameters and the evaluations it produced."""
    job = resolve_job(session, ref)
    evaluations = session.scalars(
        select(Evaluation).where(Evaluation.job_id == job.id).order_by(Evaluation.id)
    ).all()
    counts = prediction_counts(session, job.id)
    review = review_summary(session, job) if job.kind == "score" else None
    return {
        **job_row(job),
        "params": job.params,
        **counts,
        "review": review,
        "evaluations": [evaluation_row(e) for e in evaluations],
    }


def review_summary(session: Session, job: Job) -> dict[str, Any] | None:
    """How many of the answering scorer's calls were flagged and why, the coverage (the share
    of scored images not flagged), and accuracy over the labelled images, on all of them and
    on those not flagged. None when its rows carry no review (a model fitted before it)."""
    rows = session.execute(
        select(
            Prediction.review, Prediction.review_reasons, Prediction.label, Prediction.true_label
        ).where(
            Prediction.job_id == job.id,
            Prediction.scorer == answering_scorer(job),
            Prediction.review.is_not(None),
        )
    ).all()
    if not rows:
        return None
    kept = [r for r in rows if not r.review]
    reasons = [(r.review_reasons or "").split(",") for r in rows if r.review]

    def accuracy(part: list) -> float | None:
        labelled = [r for r in part if r.true_label is not None]
        if not labelled:
            return None
        return sum(r.label == r.true_label for r in labelled) / len(labelled)

    return {
        "scored": len(rows),
        "flagged": len(rows) - len(kept),
        **{why: sum(why in r for r in reasons) for why in REVIEW_REASONS},
        "coverage": len(kept) / len(rows),
        "accuracy_all": accuracy(rows),
        "accuracy_unflagged": accuracy(kept),
        "labelled_unflagged": sum(r.true_label is not None for r in kept),
    }


def prediction_counts(session: Session, job_id: int) -> dict[str, int]:
    errors = session.scalars(select(Prediction.error).where(Prediction.job_id == job_id)).all()
    return {"predictions": len(errors), "errors": sum(e is not None for e in errors)}


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
            **{column: getattr(p, column) for column in (*REVIEW_COLUMNS, *IDENTITY_COLUMNS)},
        }
        for p, name in rows
    ]


def answering_scorer(job: Job) -> str:
    """The scorer whose rows are a scoring job's answer: its ensemble, else its model."""
    ensemble_id = job.params.get("ensemble_id")
    if ensemble_id is not None:
        return scorer_key(ensemble_id=ensemble_id)
    return scorer_key(job.model_id)


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
