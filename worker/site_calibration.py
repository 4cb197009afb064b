"""Fitting a site profile when a calibration job's scoring settles (`cxrq calibrate`): the
job's rows -> training.fitting.site_fit -> db.sites, in the transaction that closes the job,
so a profile is stored whole or not at all.

The job's `params["calibrate"]` says what to fit: {"site", "rule", "target", "replace",
"adapt"}. An --adapt calibration then fine-tunes a model on the site (worker.site_adapt).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from db import audit
from db.schema import Job, Model
from db.scoring import ScorerRef
from db.sites import calibration_rows, store_profile
from training.fitting.site_fit import fit_site_profile
from training.fitting.site_images import site_images
from training.fitting.site_threshold import SiteFitError


def calibration_of(job: Job) -> dict[str, Any] | None:
    return job.params.get("calibrate")


def fit_profile_rows(
    s: Session, job_id: int, key: str, wanted: dict[str, Any], model_threshold: float
) -> dict[str, Any]:
    """The profile the job's rows give (SiteFitError when they cannot support one)."""
    rows = calibration_rows(s, job_id, key)
    columns = list(zip(*rows, strict=True)) if rows else [()] * 8
    images, left_out = site_images(*columns)
    fitted = fit_site_profile(
        images, wanted["rule"], wanted.get("target") or 0.95, model_threshold=model_threshold
    )
    fitted["counts"] |= left_out
    fitted["monitoring"]["job_id"] = job_id
    return fitted


def calibrate(s: Session, job: Job, ref: ScorerRef) -> tuple[str, str]:
    """Fit and store the job's site profile: ("succeeded", what it found), or ("failed", the
    one-line reason) with nothing stored."""
    wanted = calibration_of(job)
    model = s.get(Model, ref.model_ids[0])
    try:
        fitted = fit_profile_rows(s, job.id, ref.key, wanted, model.threshold)
    except SiteFitError as exc:
        return "failed", f"calibration failed: {exc}"
    profile = store_profile(s, wanted["site"], model, job.id, fitted, bool(wanted.get("replace")))
    audit.record(
        s,
        "site-profile",
        job_id=job.id,
        model_id=model.id,
        site=wanted["site"],
        actor=job.actor,
        detail={"profile_id": profile.id, "threshold": profile.threshold, "rule": profile.rule},
    )
    return "succeeded", profile_line(profile.id, wanted["site"], model.id, fitted)


def profile_line(profile_id: int, site: str, model_id: int, fitted: dict[str, Any]) -> str:
    """'site profile 2 (st-marys, model 1): threshold 0.41 ...' for the job's message."""
    f, c = fitted["figures"], fitted["counts"]
    sens, spec = f["sensitivity_interval"], f["specificity_interval"]
    new = f["sensitivity_prediction"]
    text = (
        f"site profile {profile_id} ({site}, model {model_id}): threshold "
        f"{fitted['threshold']:.3f} (P {fitted['raw_threshold']:.3f} before calibration), "
        f"sensitivity {f['sensitivity']:.3f} [{sens[0]:.3f}, {sens[1]:.3f}; a new set this size "
        f"{new[0]:.3f}-{new[1]:.3f}], specificity {f['specificity']:.3f} [{spec[0]:.3f}, "
        f"{spec[1]:.3f}] on {c['images']} images of "
        f"{c['patients']} patients ({c['normal_images']} NORMAL of {c['normal_patients']}, "
        f"{c['pneumonia_images']} PNEUMONIA of {c['pneumonia_patients']}); prevalence "
        f"{fitted['prevalence']:.3f}"
    )
    left = [
        f"{c['unreadable']} unreadable",
        f"{c['not_cxr']} not-cxr",
    ]
    text += "; left out: " + ", ".join(left)
    if c["unnamed_patients"]:
        text += f"; {c['unnamed_patients']} file names gave no patient (one patient each)"
    if fitted.get("kind_threshold") is None:
        text += f"; no kind threshold ({fitted['kind_note']})"
    return text
