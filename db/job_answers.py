"""A scoring job's answer, read back: whose rows answer it, those rows and their heatmaps, who
that scorer is, and what its review flagged. Closing a job, `cxrq report` and the HTML job page
all read it here.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.columns import REVIEW_REASONS
from db.schema import Ensemble, Heatmap, Job, Model, Prediction, scorer_key


def answering_scorer(job: Job) -> str:
    """The scorer whose rows are a scoring job's answer: its ensemble, else its model."""
    return scorer_key(job.model_id, job.params.get("ensemble_id"))


def answer_rows(session: Session, job: Job) -> tuple[list[Prediction], dict[str, Heatmap]]:
    """The answering scorer's prediction rows, and its heatmaps by path."""
    key = answering_scorer(job)
    rows = session.scalars(
        select(Prediction).where(Prediction.job_id == job.id, Prediction.scorer == key)
    ).all()
    maps = session.scalars(select(Heatmap).where(Heatmap.job_id == job.id, Heatmap.scorer == key))
    return list(rows), {h.path: h for h in maps}


def scorer_info(session: Session, job: Job) -> dict[str, Any]:
    """Who scored the job: kind (model or ensemble), name, id, arch (an ensemble's method),
    members (id, name, arch and weight of each) and threshold."""
    ensemble_id = job.params.get("ensemble_id")
    if ensemble_id is None:
        owner: Model | Ensemble = session.get(Model, job.model_id)
        kind, arch, members = "model", owner.arch, []
    else:
        owner = session.get(Ensemble, ensemble_id)
        kind, arch, members = "ensemble", owner.method, []
        for m in owner.members:
            model = session.get(Model, m["model_id"])
            members.append(
                {"id": model.id, "name": model.name, "arch": model.arch, "weight": m["weight"]}
            )
    return {
        "kind": kind,
        "name": owner.name,
        "id": owner.id,
        "arch": arch,
        "members": members,
        "threshold": owner.threshold,
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
            Prediction.prob.is_not(None),
        )
    ).all()
    # A model without review statistics leaves `review` empty, unless a DICOM header flagged
    # the image (lateral, not a chest): then its other scored rows count as not flagged.
    if not any(r.review is not None for r in rows):
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
    query = select(Prediction.error).where(
        Prediction.job_id == job_id, Prediction.shadow.is_(False)
    )  # a shadow's rows are compared (`report compare`), never counted as the job's
    errors = session.scalars(query).all()
    return {"predictions": len(errors), "errors": sum(e is not None for e in errors)}
