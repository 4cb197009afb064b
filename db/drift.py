"""What drift alarms read and write: the reference a batch is compared with, a job's batch,
the running window of a (site, model) pair, and the job's stored result.

    with session_scope() as s:
        ref = job_reference(s, job)           # Reference(sample or None, what, note)
        rows = batch_rows(s, job.id, "model:3")
        store_drift(s, job, result)           # training.evaluation.drift.compare's result
        for pair in running_pairs(s, site="st-marys"):
            rows = running_rows(s, pair, last=500)

A row is (prob, label, ood_score, review_reasons, brightness, identity): readable, non-shadow
rows of one model; the identity (SOP Instance UID, else path) lets an image scored twice count
once.
The reference of rows decided under a site profile is that profile's sample; of rows decided
with the model's own threshold, the model's validation sample. Rows whose P was restated for a
prevalence compare with neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.schema import Job, Model, Prediction, SiteProfile, scorer_key

DEFAULT_LAST = 500  # images in the running window of `cxrq report drift`


@dataclass(frozen=True)
class Reference:
    """A stored sample (None: none to compare with), what it is, and why there is none."""

    sample: dict[str, Any] | None
    what: str
    note: str | None = None
    site: str | None = None


@dataclass(frozen=True)
class Pair:
    """A (site, model) pair with scored rows; site None: the model's own operating point."""

    model_id: int
    site: str | None = None
    profile_id: int | None = None


def _sample(monitoring: dict[str, Any] | None) -> dict[str, Any] | None:
    return (monitoring or {}).get("sample")


def _missing(what: str) -> str:
    return f"{what} was fitted before drift references were stored; refit it to get one"


def profile_reference(profile: SiteProfile) -> Reference:
    what = f"site {profile.site} (profile {profile.id})"
    sample = _sample(profile.profile.get("monitoring"))
    note = None if sample else _missing(f"profile {profile.id}")
    return Reference(sample, what, note, profile.site)


def model_reference(model: Model | None) -> Reference:
    if model is None:
        return Reference(None, "", "the model is no longer stored")
    what = f"model {model.id}'s validation split"
    sample = _sample((model.data or {}).get("monitoring"))
    return Reference(sample, what, None if sample else _missing(f"model {model.id}"))


def job_reference(session: Session, job: Job) -> Reference:
    """The reference of a score job's batch: its site profile's, else its model's."""
    params = job.params
    if params.get("ensemble_id") is not None:
        note = "an ensemble has no reference; `cxrq report drift` follows its members"
        return Reference(None, "", note)
    if params.get("prevalence") is not None:
        note = f"P restated for a prevalence of {params['prevalence']:g}: not comparable"
        return Reference(None, "", note)
    if params.get("site_profile_id") is not None:
        return profile_reference(session.get(SiteProfile, params["site_profile_id"]))
    return model_reference(session.get(Model, job.model_id))


def _readable(query: Any) -> Any:
    return query.where(
        Prediction.shadow.is_(False), Prediction.error.is_(None), Prediction.prob.is_not(None)
    )


ROW = (
    Prediction.prob,
    Prediction.label,
    Prediction.ood_score,
    Prediction.review_reasons,
    Prediction.brightness,
    func.coalesce(Prediction.sop_instance_uid, Prediction.path),  # an image's identity
)


def batch_rows(session: Session, job_id: int, key: str) -> list[tuple[Any, ...]]:
    """The job's readable rows of one scorer (shadow rows never count)."""
    query = select(*ROW).where(Prediction.job_id == job_id, Prediction.scorer == key)
    return [tuple(r) for r in session.execute(_readable(query).order_by(Prediction.id))]


def store_drift(session: Session, job: Job, result: dict[str, Any]) -> None:
    job.drift = result


def _prevalence_jobs(session: Session) -> list[int]:
    jobs = session.execute(select(Job.id, Job.params).where(Job.kind == "score"))
    return [job_id for job_id, params in jobs if (params or {}).get("prevalence") is not None]


def running_pairs(
    session: Session, site: str | None = None, model_id: int | None = None
) -> list[Pair]:
    """Every (site, model) pair with rows: unsited rows by model, and each active profile's
    rows (a replaced profile's rows were decided with other lines and are left out)."""
    query = select(Prediction.model_id, Prediction.site_profile_id).where(
        Prediction.ensemble_id.is_(None),
        Prediction.model_id.is_not(None),
        Prediction.shadow.is_(False),
    )
    if model_id is not None:
        query = query.where(Prediction.model_id == model_id)
    pairs = []
    for found_model, profile_id in session.execute(query.distinct()):
        profile = session.get(SiteProfile, profile_id) if profile_id is not None else None
        if profile is not None and profile.state != "active":
            continue
        name = None if profile is None else profile.site
        if site is None or name == site:
            pairs.append(Pair(found_model, name, profile_id))
    return sorted(pairs, key=lambda p: (p.site or "", p.model_id, p.profile_id or 0))


def pair_reference(session: Session, pair: Pair) -> Reference:
    if pair.profile_id is not None:
        return profile_reference(session.get(SiteProfile, pair.profile_id))
    return model_reference(session.get(Model, pair.model_id))


def running_rows(session: Session, pair: Pair, last: int = DEFAULT_LAST) -> list[tuple[Any, ...]]:
    """The pair's newest `last` readable rows, oldest first; rows of --prevalence jobs left
    out (their P is restated)."""
    query = select(*ROW).where(
        Prediction.scorer == scorer_key(pair.model_id),
        Prediction.job_id.not_in(_prevalence_jobs(session)),
    )
    if pair.profile_id is None:
        query = query.where(Prediction.site_profile_id.is_(None))
    else:
        query = query.where(Prediction.site_profile_id == pair.profile_id)
    rows = session.execute(_readable(query).order_by(Prediction.id.desc()).limit(last))
    return [tuple(r) for r in rows][::-1]
