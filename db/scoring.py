"""The score job's reads and writes: who scores a job, a unit's answers stored with its done
mark, and what closing the job reads (error rows, labelled rows, counts) and writes.

Answers come from training.scoring as plain dicts named like the prediction columns; the job id
and the model or ensemble id (from the scorer key) are added here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from db import work
from db.columns import IDENTITY_COLUMNS, REVIEW_COLUMNS
from db.schema import (
    FINAL_STATES,
    Ensemble,
    Job,
    Model,
    Prediction,
    SiteProfile,
    scorer_key,
    utcnow,
)
from db.store import upsert_heatmaps, upsert_predictions


@dataclass(frozen=True)
class ScorerRef:
    """Who scores a job, by reference: one model, or an ensemble and its members."""

    model_ids: list[int]
    ensemble_id: int | None = None
    method: str = ""
    weights: list[float] = field(default_factory=list)
    bias: float = 0.0
    threshold: float = 0.5
    prevalence: float | None = None  # single models: restate P for it, decide at 0.5
    site_profile_id: int | None = None  # single models: decide with this site profile
    site_profile: dict[str, Any] | None = None  # its `profile` JSON

    @property
    def key(self) -> str:
        """The scorer whose rows count as the job's answer (and its progress)."""
        return scorer_key(self.model_ids[0], self.ensemble_id)

    @property
    def member_keys(self) -> list[str]:
        return [scorer_key(m) for m in self.model_ids]

    @property
    def all_keys(self) -> list[str]:
        """Every key the job's rows are stored under: the members', then the ensemble's."""
        return self.member_keys + ([self.key] if self.ensemble_id is not None else [])


def ensemble_ref(ensemble: Ensemble) -> ScorerRef:
    return ScorerRef(
        model_ids=[m["model_id"] for m in ensemble.members],
        ensemble_id=ensemble.id,
        method=ensemble.method,
        weights=[float(m["weight"]) for m in ensemble.members],
        bias=float(ensemble.params.get("bias", 0.0)),
        threshold=ensemble.threshold,
    )


def scorer_ref(session: Session, job: Job) -> ScorerRef:
    """The job's scorer, read once: its model, or its ensemble's row."""
    ensemble_id = job.params.get("ensemble_id")
    if ensemble_id is not None:
        return ensemble_ref(session.get(Ensemble, ensemble_id))
    site_id = job.params.get("site_profile_id")
    site = session.get(SiteProfile, site_id) if site_id is not None else None
    return ScorerRef(
        model_ids=[job.model_id],
        prevalence=job.params.get("prevalence"),
        site_profile_id=site_id,
        site_profile=None if site is None else site.profile,
    )


def shadow_ref(session: Session, job: Job) -> ScorerRef | None:
    """The job's shadow model (`cxrq score --shadow`), deciding its own rows with its own
    profile at the job's site when it has one; None when the job has no shadow."""
    model_id = job.params.get("shadow_model_id")
    if model_id is None:
        return None
    site_id = job.params.get("shadow_site_profile_id")
    site = session.get(SiteProfile, site_id) if site_id is not None else None
    return ScorerRef(
        model_ids=[model_id],
        site_profile_id=site_id,
        site_profile=None if site is None else site.profile,
    )


def scorer_ids(key: str) -> dict[str, int | None]:
    """The model or ensemble id a scorer key names ('model:3' -> model_id 3)."""
    kind, _, number = key.partition(":")
    ensemble = kind == "ensemble"
    return {
        "model_id": None if ensemble else int(number),
        "ensemble_id": int(number) if ensemble else None,
    }


# Review and identity columns are absent from answers that have none; a batch of rows must
# name the same columns, so they are stored empty.
_OPTIONAL = {
    **dict.fromkeys((*REVIEW_COLUMNS, *IDENTITY_COLUMNS, "threshold", "site_profile_id")),
    "shadow": False,
    "brightness": None,
}


def _rows(job_id: int, answers: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"job_id": job_id, **_OPTIONAL, **a, **scorer_ids(a["scorer"])} for a in answers]


def store_unit(
    session: Session,
    job_id: int,
    unit_id: int,
    key: str,
    answers: Sequence[dict[str, Any]],
    overwrite: bool = True,
    heatmaps: Sequence[dict[str, Any]] = (),
) -> None:
    """A unit's answers (and heatmaps) and its done mark, in the caller's transaction; progress
    is a fresh count of the answering scorer's rows."""
    upsert_predictions(session, _rows(job_id, answers), overwrite=overwrite)
    upsert_heatmaps(session, [{"job_id": job_id, **m} for m in heatmaps])
    work.finish_unit(session, unit_id)
    # Approximate under concurrency (a chunk committing now is missed; settling recounts), and
    # never lowered: a count taken before another chunk committed may land after it.
    done = (
        select(func.count())
        .where(Prediction.job_id == job_id, Prediction.scorer == key)
        .scalar_subquery()
    )
    higher = case((done > Job.progress_done, done), else_=Job.progress_done)
    session.execute(update(Job).where(Job.id == job_id).values(progress_done=higher))


def store_answers(
    session: Session, job_id: int, answers: Sequence[dict[str, Any]], overwrite: bool = True
) -> None:
    """Answers outside any unit (a folder that could not be read)."""
    upsert_predictions(session, _rows(job_id, answers), overwrite=overwrite)


def scorer_errors(session: Session, job_id: int, key: str) -> list[str | None]:
    """The error column of every row of one scorer (None where the image was scored)."""
    query = select(Prediction.error).where(Prediction.job_id == job_id, Prediction.scorer == key)
    return list(session.scalars(query).all())


def labelled_rows(session: Session, job_id: int, key: str) -> list[Any]:
    """(prob, label, true_label, prob_viral, path) of one scorer's labelled, readable rows."""
    return session.execute(
        select(
            Prediction.prob,
            Prediction.label,
            Prediction.true_label,
            Prediction.prob_viral,
            Prediction.path,
        ).where(
            Prediction.job_id == job_id,
            Prediction.scorer == key,
            Prediction.true_label.is_not(None),
            Prediction.error.is_(None),
        )
    ).all()


def recount(session: Session, job: Job, key: str) -> int:
    """The answering scorer's rows, counted afresh into the job's progress."""
    done = session.scalar(
        select(func.count()).where(Prediction.job_id == job.id, Prediction.scorer == key)
    )
    job.progress_done = done
    return done


def close_job(session: Session, job_id: int, state: str, message: str, done: int) -> bool:
    """Close the job unless another caller already did (a conditional update); True if won."""
    return bool(
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.state.not_in(FINAL_STATES))
            .values(state=state, message=message, finished_at=utcnow(), progress_done=done)
        ).rowcount
    )


def model_threshold(session: Session, model_id: int) -> float:
    return session.get(Model, model_id).threshold


def kind_threshold_of(model: Model) -> float | None:
    """A stored model's kind threshold; None when it has no kind head."""
    if model.config.get("kind_head", "none") == "none":
        return None
    return float(model.data.get("kind_threshold", 0.5))


def kind_thresholds(session: Session, model_ids: Sequence[int]) -> list[float | None]:
    return [kind_threshold_of(session.get(Model, m)) for m in model_ids]
