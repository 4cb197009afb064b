"""Site profiles in the database: storing one (replacing the old, which is kept), finding the
one a score job decides with, and refusing a profile for other weights than its own.

    with session_scope() as s:
        check_site_free(s, "st-marys", model, replace=False)  # SiteError if taken
        profile = store_profile(s, "st-marys", model, job_id, fitted, replace=False)
        profile = profile_for(s, "st-marys", model)  # the active profile of that model

A site name is unique per model among active profiles; `--replace` marks the old one
replaced (it stays, for the audit trail and the rows that name it).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.schema import Model, Prediction, SiteProfile, utcnow


class SiteError(LookupError):
    """A site name that names nothing usable; str() is one line that says what to do."""

    user_error = True


def active_profiles(session: Session, site: str) -> list[SiteProfile]:
    query = select(SiteProfile).where(SiteProfile.site == site, SiteProfile.state == "active")
    return list(session.scalars(query.order_by(SiteProfile.id)).all())


def active_profile(session: Session, site: str, model_id: int) -> SiteProfile | None:
    return next((p for p in active_profiles(session, site) if p.model_id == model_id), None)


def check_site_free(session: Session, site: str, model: Model, replace: bool) -> None:
    """SiteError when the site already has an active profile for this model (and no replace)."""
    old = active_profile(session, site, model.id)
    if old is not None and not replace:
        raise SiteError(
            f"site {site} already has profile {old.id} for model {model.id}; "
            "pass --replace to refit it (the old one is kept, marked replaced)"
        )


def store_profile(
    session: Session,
    site: str,
    model: Model,
    job_id: int | None,
    fitted: dict[str, Any],
    replace: bool = False,
    adapted_model_id: int | None = None,
) -> SiteProfile:
    """A new active profile of `model` at `site`; an older active one is marked replaced."""
    check_site_free(session, site, model, replace)
    old = active_profile(session, site, model.id)
    if old is not None:
        old.state, old.replaced_at = "replaced", utcnow()
    profile = SiteProfile(
        site=site,
        model_id=model.id,
        weights_sha256=model.weights_sha256,
        adapted_model_id=adapted_model_id,
        job_id=job_id,
        state="active",
        rule=fitted["rule"],
        target_sensitivity=fitted.get("target_sensitivity"),
        threshold=float(fitted["threshold"]),
        profile=fitted,
    )
    session.add(profile)
    session.flush()
    return profile


def profile_for(session: Session, site: str, model: Model | None) -> SiteProfile:
    """The active profile of `model` at `site` (None: the site's only model, or its newest
    profile when several models were calibrated there). SiteError names what to do."""
    profiles = active_profiles(session, site)
    if not profiles:
        raise SiteError(
            f"no site named {site!r}; calibrate one with `cxrq calibrate MODEL --data FOLDER "
            f"--site {site}` (`cxrq report sites` lists them)"
        )
    if model is None:
        return profiles[-1]
    mine = next((p for p in profiles if p.model_id == model.id), None)
    if mine is None or mine.weights_sha256 != model.weights_sha256:
        other = mine or profiles[-1]
        raise SiteError(
            f"site {site} was calibrated for model {other.model_id} "
            f"(sha {other.weights_sha256[:12]}); calibrate model {model.id} for this site"
        )
    return mine


def scoring_model_id(profile: SiteProfile) -> int:
    """The model that scores under a profile: its adapted model when it names one."""
    return profile.adapted_model_id or profile.model_id


def calibration_rows(session: Session, job_id: int, key: str) -> list[Any]:
    """What fitting a profile reads of the calibration job's labelled rows, errors included
    (they are counted, not fitted)."""
    return session.execute(
        select(
            Prediction.path,
            Prediction.prob,
            Prediction.true_label,
            Prediction.prob_viral,
            Prediction.ood_score,
            Prediction.anomaly_score,
            Prediction.error,
            Prediction.brightness,
        )
        .where(
            Prediction.job_id == job_id,
            Prediction.scorer == key,
            Prediction.true_label.is_not(None),
        )
        .order_by(Prediction.path)
    ).all()


def site_rows(session: Session, include_replaced: bool = False) -> list[SiteProfile]:
    """Every profile for `cxrq report sites`, newest last."""
    query = select(SiteProfile).order_by(SiteProfile.id)
    if not include_replaced:
        query = query.where(SiteProfile.state == "active")
    return list(session.scalars(query).all())


COUNT_KEYS = (
    "images",
    "patients",
    "normal_images",
    "normal_patients",
    "pneumonia_images",
    "pneumonia_patients",
)


def site_report_row(p: SiteProfile) -> dict[str, Any]:
    """One profile as `cxrq report sites` shows it (JSON adds the whole profile)."""
    fitted, f, c = p.profile, p.profile["figures"], p.profile["counts"]
    return {
        "id": p.id,
        "site": p.site,
        "model_id": p.model_id,
        "adapted_model_id": p.adapted_model_id,
        "state": p.state,
        "rule": p.rule,
        "target": p.target_sensitivity,
        "threshold": p.threshold,
        "raw_threshold": fitted["raw_threshold"],
        "sensitivity": f["sensitivity"],
        "sensitivity_low": f["sensitivity_interval"][0],
        "sensitivity_high": f["sensitivity_interval"][1],
        "specificity": f["specificity"],
        "specificity_low": f["specificity_interval"][0],
        "specificity_high": f["specificity_interval"][1],
        "sensitivity_new_low": f.get("sensitivity_prediction", [None, None])[0],
        "sensitivity_new_high": f.get("sensitivity_prediction", [None, None])[1],
        "roc_auc": f["roc_auc"],
        "prevalence": fitted["prevalence"],
        **{k: c[k] for k in COUNT_KEYS},
        "job_id": p.job_id,
        "weights_sha256": p.weights_sha256,
        "created_at": p.created_at.isoformat(timespec="seconds"),
        "profile": fitted,
    }


def sites_report(session: Session, include_replaced: bool = False) -> list[dict[str, Any]]:
    return [site_report_row(p) for p in site_rows(session, include_replaced)]
