"""Fitting a site profile: a model's operating point at one site, from that site's labelled
images as one scoring job answered them (P, P(viral), the review scores), so nothing is scored
twice and a worker can fit it from the stored rows.

from training.fitting.site_fit import fit_site_profile  # SiteImages: training.fitting.site_images
profile = fit_site_profile(SiteImages(prob, labels, patients, ...), rule="sensitivity",
                           target=0.95)
profile["threshold"], profile["platt"], profile["figures"]

What a profile holds (plain JSON; training.scoring.site applies it):
- the threshold (training.fitting.site_threshold: the target holds at the 5th percentile of a
  patient bootstrap), on the site-calibrated P, with the raw-P threshold beside it;
- the recalibration of P: Platt on the logit with both classes weighed equally, then moved to
  the site's measured prevalence, so P means what it says there;
- the review lines refitted to the site: not-cxr and anomaly rescaled so their budgets hold on
  the site's images, and the low-confidence line under the new calibration;
- the prevalence, the kind threshold, reliability before and after, and the reference
  monitoring compares against (quantiles of P and of the review scores, each flag's share,
  and the per-image sample drift alarms test against: training.evaluation.drift).
"""

from __future__ import annotations

from typing import Any

import torch

from training.evaluation.curves import roc_points
from training.evaluation.drift import reference_sample
from training.evaluation.metrics import roc_auc
from training.fitting.logistic import logit
from training.fitting.review_fit import (
    ANOMALY_BUDGET,
    NOT_CXR_BUDGET,
    confidence_line,
    fit_platt,
    line_above,
)
from training.fitting.site_images import SiteImages, check_counts, counts
from training.fitting.site_threshold import (
    SiteFitError,
    ThresholdChoice,
    choice_at,
    margin_threshold,
    patient_weights,
)
from training.fitting.thresholds import balanced_threshold
from training.review.stats import Scores
from training.review.verdicts import REASONS, flags

MIN_KIND = 10  # pneumonias of each known kind for a kind threshold
N_BOOT = 2000
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
RELIABILITY_BINS = 10


def fit_site_profile(
    images: SiteImages,
    rule: str = "sensitivity",
    target: float = 0.95,
    model_threshold: float | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """The site profile of `images` (see the module docstring); with `model_threshold` the
    figures also say what the model's own threshold gives there. Raises SiteFitError."""
    ood_scale = _scale(images.ood, NOT_CXR_BUDGET) if images.ood is not None else None
    not_cxr = (
        images.ood / ood_scale >= 1
        if ood_scale is not None
        else torch.zeros_like(images.labels, dtype=torch.bool)
    )
    fit = images.subset(~not_cxr)
    found = counts(fit)
    check_counts(found, target if rule == "sensitivity" else None)
    a, b = fit_platt(fit.prob.float(), fit.labels)
    if a <= 0:
        raise SiteFitError(
            "the model's P does not rank this site's images (calibration slope <= 0)"
        )
    prevalence = float(fit.labels.double().mean())
    platt = (a, b + float(logit(torch.tensor(prevalence))))
    weights = patient_weights(fit.patients, N_BOOT, seed)
    choice = _threshold(fit, rule, target, weights)
    profile: dict[str, Any] = {
        "rule": rule,
        "target_sensitivity": target if rule == "sensitivity" else None,
        "threshold": float(calibrated(torch.tensor([choice.threshold]), platt)[0]),
        "raw_threshold": choice.threshold,
        "platt": list(platt),
        "prevalence": prevalence,
        "figures": _figures(fit, choice, weights, model_threshold),
        "counts": found | {"not_cxr": int(not_cxr.sum())},
        "bootstrap": {"resamples": N_BOOT, "seed": seed, "unit": "patient"},
        "roc": roc_points(fit.labels.tolist(), fit.prob.tolist()),  # the site's, for the report
    }
    profile |= _kind(fit)
    site_p = calibrated(fit.prob, platt)
    profile["reliability"] = {
        "before": reliability(fit.prob, fit.labels),
        "after": reliability(site_p, fit.labels),
    }
    profile["review"] = _review(fit, ood_scale, platt, choice.threshold)
    profile["monitoring"] = _monitoring(fit, site_p, profile["review"], platt, choice.threshold)
    profile["monitoring"]["sample"] = _sample(images, profile["review"], platt, choice.threshold)
    return profile


def calibrated(prob: torch.Tensor, platt: tuple[float, float] | list[float]) -> torch.Tensor:
    """The site-calibrated P: sigmoid(a * logit(P) + b)."""
    return torch.sigmoid(platt[0] * logit(prob.double()) + platt[1])


def _scale(scores: torch.Tensor, budget: float) -> float:
    """How much a review line moves so that at most `budget` of these scores reach it."""
    return max(line_above(scores, budget), 1e-6)


def _threshold(fit: SiteImages, rule: str, target: float, weights: torch.Tensor) -> ThresholdChoice:
    if rule == "sensitivity":
        return margin_threshold(fit.labels, fit.prob, weights, target)
    cut = balanced_threshold(fit.labels, fit.prob)
    return choice_at(fit.labels, fit.prob.double(), weights, cut)


def _figures(
    fit: SiteImages, choice: ThresholdChoice, weights: torch.Tensor, model_threshold: float | None
) -> dict[str, Any]:
    out = {
        "sensitivity": choice.sensitivity,
        "specificity": choice.specificity,
        "sensitivity_interval": list(choice.sensitivity_interval),
        "specificity_interval": list(choice.specificity_interval),
        "sensitivity_lower": choice.sensitivity_lower,
        "sensitivity_prediction": list(choice.sensitivity_prediction),
        "specificity_prediction": list(choice.specificity_prediction),
        "roc_auc": roc_auc(fit.labels, fit.prob),
    }
    if model_threshold is not None:
        own = choice_at(fit.labels, fit.prob.double(), weights, model_threshold)
        out["model_threshold"] = {
            "threshold": model_threshold,
            "sensitivity": own.sensitivity,
            "specificity": own.specificity,
        }
    return out


def _kind(fit: SiteImages) -> dict[str, Any]:
    known = (fit.labels == 1) & (fit.kinds >= 0) & torch.isfinite(fit.viral)
    if not bool(torch.isfinite(fit.viral).any()):
        return {"kind_threshold": None, "kind_note": "the model has no kind head"}
    n_viral = int((fit.kinds[known] == 1).sum())
    n_bacterial = int(known.sum()) - n_viral
    if min(n_viral, n_bacterial) < MIN_KIND:
        return {
            "kind_threshold": None,
            "kind_note": f"{n_bacterial} bacterial and {n_viral} viral pneumonias of known kind "
            f"(at least {MIN_KIND} of each needed): the model's kind threshold is kept",
        }
    cut = balanced_threshold(fit.kinds[known], fit.viral[known])
    return {"kind_threshold": cut, "kind_note": f"{n_bacterial} bacterial, {n_viral} viral"}


def _review(
    fit: SiteImages, ood_scale: float | None, platt: tuple[float, float], raw_threshold: float
) -> dict[str, float] | None:
    """The site's review lines, as factors on the model's ood and anomaly lines and a new
    low-confidence line; None for a model without review statistics."""
    if ood_scale is None or fit.anomaly is None:
        return None
    normal = fit.labels == 0
    anomaly_scale = _scale(fit.anomaly[normal], ANOMALY_BUDGET)
    called = fit.prob >= raw_threshold
    scores = _site_scores(fit, ood_scale, anomaly_scale, platt, called)
    return {
        "ood_scale": ood_scale,
        "anomaly_scale": anomaly_scale,
        "confidence_line": confidence_line(scores, called),
    }


def _site_scores(
    fit: SiteImages,
    ood_scale: float,
    anomaly_scale: float,
    platt: tuple[float, float] | list[float],
    called: torch.Tensor,
) -> Scores:
    site_p = calibrated(fit.prob, platt)
    confidence = torch.where(called, site_p, 1 - site_p)
    return Scores(fit.ood / ood_scale, fit.anomaly / anomaly_scale, confidence)


def _monitoring(
    fit: SiteImages,
    site_p: torch.Tensor,
    review: dict[str, float] | None,
    platt: tuple[float, float],
    raw_threshold: float,
) -> dict[str, Any]:
    """Where this site's images sat when it was calibrated: later drift is measured from here."""
    q = torch.tensor(QUANTILES, dtype=torch.float64)
    out: dict[str, Any] = {"quantiles": QUANTILES, "prob": torch.quantile(site_p, q).tolist()}
    if review is None:
        return out
    called = fit.prob >= raw_threshold
    scores = _site_scores(fit, review["ood_scale"], review["anomaly_scale"], platt, called)
    out["ood"] = torch.quantile(scores.ood.double(), q).tolist()
    out["anomaly"] = torch.quantile(scores.anomaly.double(), q).tolist()
    out["flag_shares"] = {
        "not-cxr": float((scores.ood >= 1).double().mean()),
        "anomaly": float(((scores.anomaly >= 1) & ~called).double().mean()),
        "low-confidence": float((scores.confidence < review["confidence_line"]).double().mean()),
    }
    return out


def _sample(
    images: SiteImages,
    review: dict[str, float] | None,
    platt: tuple[float, float],
    raw_threshold: float,
) -> dict[str, Any]:
    """The drift reference (training.evaluation.drift): every readable image, its not-cxr ones
    included, as scoring under this profile would store it (site P, the OOD score on the site's
    line, the call and each flag), so a later batch is compared with like."""
    site_p = calibrated(images.prob, platt).numpy()
    called = images.prob >= raw_threshold
    bright = None if images.brightness is None else images.brightness.numpy()
    if review is None:
        return reference_sample(site_p, called.numpy(), None, {}, "site", bright)
    scores = _site_scores(images, review["ood_scale"], review["anomaly_scale"], platt, called)
    reasons, _ = flags(scores, called, review["confidence_line"])
    marks = {name: [name in r for r in reasons] for name in REASONS}
    return reference_sample(site_p, called.numpy(), scores.ood.numpy(), marks, "site", bright)


def reliability(prob: torch.Tensor, labels: torch.Tensor) -> list[dict[str, float]]:
    """Per tenth of P: images, mean P and the observed PNEUMONIA share (empty tenths left out)."""
    p = prob.double()
    bins = (p * RELIABILITY_BINS).long().clamp(0, RELIABILITY_BINS - 1)
    out = []
    for b in range(RELIABILITY_BINS):
        mine = bins == b
        if bool(mine.any()):
            out.append(
                {
                    "bin": b / RELIABILITY_BINS,
                    "n": int(mine.sum()),
                    "mean_p": float(p[mine].mean()),
                    "observed": float(labels[mine].double().mean()),
                }
            )
    return out
