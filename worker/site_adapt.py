"""`cxrq calibrate --adapt`, after the calibration job stored its profile: fine-tune the model
on the site's images (training.fitting.adapt), then store the adapted model (linked to its
parent and the site) and the site profile fitted on its out-of-fold scores, which replaces the
unadapted one (kept, marked replaced; its figures are copied beside the new ones).

An adapted model is served only through its site profile: db.lookups never picks it by arch,
name or as a default, and `cxrq score --model` refuses it (worker.jobs).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from db import audit
from db.lookups import weights_of
from db.schema import Job, Model, SiteProfile
from db.session import session_scope
from db.sites import calibration_rows, store_profile
from db.store import save_model
from training.data.data_files import CLASSES, LabeledImage, patient_id
from training.fitting.adapt import adapt_to_site
from training.fitting.site_fit import fit_site_profile
from training.models.checkpoint import from_bytes, sha256, to_bytes
from worker.site_calibration import profile_line


def _site_items(job_id: int, key: str, profile: dict[str, Any]) -> list[LabeledImage]:
    """The images the unadapted profile was fitted on: readable, and not not-cxr at the site."""
    scale = (profile.get("review") or {}).get("ood_scale")
    with session_scope() as s:
        rows = calibration_rows(s, job_id, key)
    return [
        LabeledImage(r.path, CLASSES.index(r.true_label), patient_id(r.path))
        for r in rows
        if r.error is None and (scale is None or r.ood_score is None or r.ood_score / scale < 1)
    ]


def adapt_site(job_id: int, trainable: str = "all") -> str:
    """Adapt the calibration job's model to its site; returns the new profile's line."""
    with session_scope() as s:
        job = s.get(Job, job_id)
        wanted = job.params["calibrate"]
        base = s.scalars(select(SiteProfile).where(SiteProfile.job_id == job_id)).one()
        parent_id, base_id, base_profile = base.model_id, base.id, base.profile
        # The stored checkpoint, not the served copy: serving folds batch norm into the
        # convolutions, and the adapted weights must load where the parent's do.
        parent_bundle = from_bytes(weights_of(s, parent_id))
    items = _site_items(job_id, f"model:{parent_id}", base_profile)
    result = adapt_to_site(parent_bundle, items, trainable)
    if result.epochs == 0:
        best = max(h["oof_auc"] for h in result.history)
        return (
            f"adapting did not beat the model on patients it was not tuned on (out-of-fold AUC "
            f"{result.history[0]['oof_auc']:.4f} untuned, {best:.4f} at best, a gain that does "
            f"not hold over the patient bootstrap): site profile {base_id} stays, unadapted"
        )
    fitted = fit_site_profile(result.site_images(), wanted["rule"], wanted.get("target") or 0.95)
    fitted["counts"] |= {k: base_profile["counts"][k] for k in ("unreadable", "unnamed_patients")}
    fitted["counts"]["not_cxr"] = base_profile["counts"]["not_cxr"]
    fitted["monitoring"]["job_id"] = job_id
    fitted["adapt"] = {
        "trainable": trainable,
        "epochs": result.epochs,
        "history": result.history,
        "seconds": result.seconds,
        "scores": "out-of-fold over two patient folds of the site",
    }
    fitted["unadapted"] = {"profile_id": base_id, "figures": base_profile["figures"]}
    weights = to_bytes(result.bundle)
    with session_scope() as s:
        parent = s.get(Model, parent_id)
        adapted = save_model(
            s,
            name=f"{parent.name}@{wanted['site']}",
            arch=parent.arch,
            preset=parent.preset,
            img_size=parent.img_size,
            threshold=parent.threshold,
            config=parent.config | {"adapted": trainable},
            data=parent.data | {"adapted_on": job.params["folder"], "epochs": result.epochs},
            weights=weights,
            weights_sha256=sha256(weights),
            n_params=parent.n_params,
            train_seconds=result.seconds,
            job_id=job_id,
            parent_id=parent.id,
            site=wanted["site"],
        )
        profile = store_profile(s, wanted["site"], parent, job_id, fitted, True, adapted.id)
        audit.record(
            s,
            "site-adapt",
            job_id=job_id,
            model_id=adapted.id,
            site=wanted["site"],
            detail={"parent_id": parent.id, "profile_id": profile.id, "epochs": result.epochs},
        )
        line = profile_line(profile.id, wanted["site"], parent.id, fitted)
        return f"{line}; adapted model {adapted.id} ({result.epochs} epochs, {trainable})"
