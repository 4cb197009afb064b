"""Look-ups by reference: the model, ensemble, scorer or job a user named on the command line.

    with session_scope() as s:
        model = resolve_model(s, "googlenet")  # an id, an alias, a name or an arch
        job = resolve_job(s, "latest-score")

A reference that names nothing raises NotFoundError with a one-line message that says where
to look.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.aliases import DEFAULT, alias_target
from db.governance import ModelAlias
from db.schema import Ensemble, Evaluation, Job, Model, SiteProfile
from db.sites import SiteError, profile_for
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


@dataclass(frozen=True)
class Resolved:
    """Who a reference named, and `how` it was chosen when no id or name picked it (an alias,
    or the only model), which the score job's message repeats; None when one did."""

    scorer: Model | Ensemble
    how: str | None = None


def _unadapted(session: Session, *where: Any) -> list[Model]:
    query = select(Model).where(Model.site.is_(None), *where)  # adapted: only through a site
    return list(session.scalars(query.order_by(Model.id)).all())


def _no_default(session: Session, site: str | None) -> Resolved:
    """No --model and no `default` alias: the only model, else a refusal that says what to do."""
    models = _unadapted(session)
    if not models:
        raise NotFoundError("no trained model yet; train one with `cxrq train --arch googlenet`")
    if len(models) == 1:
        only = models[0]
        how = f"model {only.id}, the only model (no `default` alias is set)"
        return Resolved(only, how)
    where = f" for site {site}" if site else ""
    raise NotFoundError(
        f"{len(models)} models and no `default` alias{where}; name one with --model, or "
        "promote one with `cxrq model promote MODEL --as default --why ...`"
    )


def _one_of(found: list[Model], what: str) -> Model:
    if len(found) > 1:
        raise NotFoundError(
            f"{len(found)} {what} models (ids {', '.join(str(m.id) for m in found)}); name one "
            "by id, or promote one with `cxrq model promote`"
        )
    return found[0]


def resolve(session: Session, ref: str | None, site: str | None = None) -> Resolved:
    """A scorer by reference: an id, an alias (the site's, then the global one), a model
    name or an arch that names exactly one model, or an ensemble ('ensemble:NAME' or its
    name). No ref: the `default` alias (the site's first), else the only model. Several models
    behind a name or arch are refused: nothing is ever picked by a score."""
    if ref is None:
        alias = alias_target(session, DEFAULT, site)
        if alias is None:
            return _no_default(session, site)
        return Resolved(session.get(Model, alias.model_id), _alias_how(alias))
    if ref.startswith("ensemble:"):
        return Resolved(resolve_ensemble(session, ref.removeprefix("ensemble:")))
    if ref.isdigit():
        model = session.get(Model, int(ref))
        if model is None:
            raise NotFoundError(f"no model with id {ref}; `cxrq report models` lists them")
        return Resolved(model)
    alias = alias_target(session, ref, site)
    if alias is not None:
        return Resolved(session.get(Model, alias.model_id), _alias_how(alias))
    # An arch name means every model of that arch (and any model named like it): one, or none.
    found = _unadapted(session, (Model.name == ref) | (Model.arch == ref))
    if found:
        model = _one_of(found, ref)
        return Resolved(model)
    ensemble = ensemble_named(session, ref)
    if ensemble is not None:
        return Resolved(ensemble)
    raise NotFoundError(
        f"no model, alias or ensemble named {ref!r}; `cxrq report models` lists them"
    )


def _alias_how(alias: ModelAlias) -> str:
    where = f" at site {alias.site}" if alias.site else ""
    return f"alias {alias.name}{where} (model {alias.model_id})"


def resolve_model(session: Session, ref: str | None, site: str | None = None) -> Model:
    """A model by reference (see `resolve`); an ensemble's name is refused."""
    found = resolve(session, ref, site).scorer
    if isinstance(found, Ensemble):
        raise NotFoundError(f"{ref!r} is an ensemble; name a model")
    return found


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


def resolve_scorer(session: Session, ref: str | None, site: str | None = None) -> Model | Ensemble:
    """A model or an ensemble by reference (see `resolve`)."""
    return resolve(session, ref, site).scorer


def site_profile_of(session: Session, site: str, ref: str | None) -> SiteProfile:
    """The site's active profile for the model a reference names (none named: the site's
    `default` alias, else the global one, else the only model). SiteError says what to do."""
    found = resolve_scorer(session, ref, site)
    if isinstance(found, Ensemble):
        raise SiteError("a site profile applies to single models, not ensembles")
    return profile_for(session, site, found)


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
