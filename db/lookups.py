"""Look-ups by reference: the model, ensemble, scorer or job a user named on the command line.

    with session_scope() as s:
        model = resolve_model(s, "googlenet")  # an id, a name or an arch
        job = resolve_job(s, "latest-score")

A reference that names nothing raises NotFoundError with a one-line message that says where
to look.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.schema import Ensemble, Evaluation, Job, Model
from db.store import NotFoundError, get_job


def latest_evaluation(
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
    vals = {m.id: latest_evaluation(session, "validation", m.id) for m in models}
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
    query = select(Model).where(Model.site.is_(None))  # adapted models: only through a site
    if ref is not None:
        named = session.scalars(query.where(Model.name == ref)).all()
        candidates = list(named or session.scalars(query.where(Model.arch == ref)).all())
    else:
        candidates = list(session.scalars(query).all())
    if not candidates:
        hint = f"no model named {ref!r}" if ref else "no trained model yet"
        raise NotFoundError(f"{hint}; train one with `cxrq train --arch googlenet`")
    return _best_by_val_f1(session, candidates)


def ensemble_named(session: Session, name: str) -> Ensemble | None:
    return session.scalars(select(Ensemble).where(Ensemble.name == name)).first()


def latest_model(session: Session, arch: str, preset: str) -> Model | None:
    """The newest model of an arch trained with a preset."""
    query = select(Model).where(Model.arch == arch, Model.preset == preset, Model.site.is_(None))
    return session.scalars(query.order_by(Model.id.desc())).first()


def weights_hash(session: Session, model_id: int) -> str | None:
    """A model's weights hash without loading its weights; None when there is no such model."""
    return session.scalar(select(Model.weights_sha256).where(Model.id == model_id))


def weights_of(session: Session, model_id: int) -> bytes | None:
    return session.scalar(select(Model.weights).where(Model.id == model_id))


def resolve_ensemble(session: Session, name: str) -> Ensemble:
    ensemble = ensemble_named(session, name)
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
            ensemble = ensemble_named(session, ref)
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
