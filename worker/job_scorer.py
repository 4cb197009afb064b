"""Who scores a new score job: the scorer a reference names (and how it was chosen), a shadow
model beside it, the operating point that will decide, and how the job describes them.

    chosen = scorer_of(session, params, "default")  # Resolved(scorer, "alias default (...)")
    params = operating_point(session, chosen.scorer, params)
"""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy.orm import Session

from db.lookups import Resolved, resolve
from db.schema import Ensemble, Model, SiteProfile, scorer_key
from db.scoring import ScorerRef, ensemble_ref
from db.sites import SiteError, active_profile, scoring_model_id
from training.scoring.answers import PREVALENCE_THRESHOLD
from worker.job_params import ScoreParams


class ShadowError(ValueError):
    """A shadow scorer that cannot shadow this job; str() is one line that says why."""

    user_error = True


def described(scorer: Model | Ensemble, params: ScoreParams | None = None) -> str:
    if isinstance(scorer, Model):
        text = f"model {scorer.id} ({scorer.name}, {scorer.arch})"
    else:
        text = f"ensemble {scorer.id} ({scorer.name}, {scorer.method})"
    if params is None:
        return text
    if params.prevalence is not None:
        return f"{text} at prevalence {params.prevalence:g}"
    if params.site_profile_id is not None:
        return f"{text} under site profile {params.site_profile_id}"
    return text


def operating_point(s: Session, found: Model | Ensemble, params: ScoreParams) -> ScoreParams:
    """The threshold that will decide, and where it comes from, kept on the job."""
    if isinstance(found, Ensemble):
        return replace(params, threshold=found.threshold, threshold_source="ensemble")
    if params.prevalence is not None:
        source = f"prevalence {params.prevalence:g}"
        return replace(params, threshold=PREVALENCE_THRESHOLD, threshold_source=source)
    if params.site_profile_id is not None:
        profile = s.get(SiteProfile, params.site_profile_id)
        source = f"site {profile.site} (profile {profile.id})"
        return replace(params, threshold=profile.threshold, threshold_source=source)
    return replace(params, threshold=found.threshold, threshold_source=_model_source(found))


def _model_source(model: Model) -> str:
    """Where a model's own threshold comes from, and how many images it rests on."""
    rule, n_tune = model.config.get("threshold"), model.data.get("n_tune")
    if isinstance(rule, str) and n_tune:
        return f"training split ({rule} rule on {n_tune} tuning images)"
    if isinstance(rule, (int, float)):
        return f"training config (fixed at {rule:g}, preset {model.preset})"
    return "model's stored threshold"


def scorer_of(s: Session, params: ScoreParams, scorer: str | None) -> Resolved:
    """Who scores: the site profile's model (its adapted model when it names one), else the
    reference resolved; an adapted model only ever through its site."""
    if params.site_profile_id is not None:
        profile = s.get(SiteProfile, params.site_profile_id)
        return Resolved(s.get(Model, scoring_model_id(profile)))
    found = resolve(s, scorer)
    model = found.scorer
    if isinstance(model, Model) and model.site is not None:
        raise SiteError(
            f"model {model.id} is adapted to site {model.site}; score with --site {model.site}"
        )
    return found


def with_shadow(
    s: Session, params: ScoreParams, primary: Model | Ensemble, ref: str
) -> ScoreParams:
    """The shadow model named by `ref` (an id, alias or name) on the job, with its own profile
    at the job's site when it has one. It must be another single model than every one whose
    rows the job keeps, or the two sets of rows would be one."""
    site = s.get(SiteProfile, params.site_profile_id) if params.site_profile_id else None
    shadow = resolve(s, ref, site.site if site else None).scorer
    if isinstance(shadow, Ensemble) or shadow.site is not None:
        raise ShadowError(f"--shadow {ref}: name a single model that is not site-adapted")
    if scorer_key(shadow.id) in answering(primary):
        raise ShadowError(f"--shadow {ref} is model {shadow.id}, which already scores this job")
    profile = None if site is None else active_profile(s, site.site, shadow.id)
    return replace(
        params,
        shadow_model_id=shadow.id,
        shadow_site_profile_id=None if profile is None else profile.id,
    )


def answering(scorer: Model | Ensemble) -> list[str]:
    """Who stores a row for each image: the model, or an ensemble's members and itself."""
    ref = ScorerRef([scorer.id]) if isinstance(scorer, Model) else ensemble_ref(scorer)
    return ref.all_keys
