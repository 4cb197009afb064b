"""A score job's shadow rows beside its own (`cxrq report compare JOB`): the pairs by image,
where the two calls differ, worst first.

    with session_scope() as s:
        pairs = compared_pairs(s, job)  # [] when the job had no shadow
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.job_answers import answering_scorer
from db.schema import Job, Prediction, scorer_key
from db.store import NotFoundError


@dataclass(frozen=True)
class Pair:
    """One image as the job's scorer and its shadow answered it (None where one failed)."""

    path: str
    true_label: str | None
    prob: float | None
    label: str | None
    shadow_prob: float | None
    shadow_label: str | None
    threshold: float | None = None  # what decided each call
    shadow_threshold: float | None = None

    @property
    def both(self) -> bool:
        return self.prob is not None and self.shadow_prob is not None

    @property
    def gap(self) -> float:
        return abs(self.prob - self.shadow_prob) if self.both else 0.0


def shadow_key(job: Job) -> str:
    model_id = job.params.get("shadow_model_id")
    if model_id is None:
        raise NotFoundError(
            f"job {job.id} had no shadow model; score with `cxrq score FOLDER --shadow MODEL`"
        )
    return scorer_key(model_id)


def compared_pairs(session: Session, job: Job) -> list[Pair]:
    """Every image of the job with both answers, disagreements first, widest gap in P first."""
    own, other = answering_scorer(job), shadow_key(job)
    rows = session.scalars(
        select(Prediction).where(Prediction.job_id == job.id, Prediction.scorer.in_([own, other]))
    ).all()
    mine = {r.path: r for r in rows if r.scorer == own and not r.shadow}
    theirs = {r.path: r for r in rows if r.scorer == other and r.shadow}
    pairs = [
        Pair(
            path,
            row.true_label,
            row.prob,
            row.label,
            theirs[path].prob if path in theirs else None,
            theirs[path].label if path in theirs else None,
            row.threshold,
            theirs[path].threshold if path in theirs else None,
        )
        for path, row in mine.items()
    ]
    return sorted(pairs, key=lambda p: (p.label == p.shadow_label, -p.gap, p.path))
