"""When not to trust a call: out-of-distribution, anomaly and confidence scores, and the review
flags they raise.

Every score is computed from what inference already has: the decoded uint8 batch and the
classifier's penultimate features (the input of its last linear layer, caught by a hook; the
measurements are in training.review.features).

- **not-cxr** (is this a frontal pediatric chest X-ray like the training images?): six
  components, each a distance from the training images, put on one scale (1 = that component's
  90th percentile on the tuning split) and combined by their maximum: the Mahalanobis distance
  of the penultimate features to the nearest class (Lee et al. 2018; tied covariance, top
  principal directions plus the residual), the same distance of a 16x16 grey thumbnail
  (exposure, framing), one minus the thumbnail's correlation with the training images' mean
  layout (documents, noise, inverted films), a logistic check fitted on the training images
  against themselves turned and inverted (upside-down and rotated films), colour saturation
  (photos), and how far the image's fine detail departs from the training images' (blur,
  noise, tiny crops blown up).
- **anomaly** (CAAD, Zhang et al. 2020): the features' distance from the NORMAL training
  images. It flags a NORMAL call that does not look like the NORMAL images it was trained on.
- **confidence**: the calibrated probability that the call is right (Platt scaling of the
  logit, fitted on the tuning split with both classes weighed equally).

Scores are scaled so a flag fires at 1 (`ood`, `anomaly`) and `review_score` is the largest
ratio to any flag line: >= 1 is flagged, and it orders a review queue worst first. The
Gaussians are fitted on the training part; the scales, the calibration and the flag lines on the
tuning split (on the training part when a preset has none), so that at most 1% of its images
get not-cxr (the issue allows 2%; see NOT_CXR_BUDGET) and at most 10% any flag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from training.review.features import Gaussian, correlation, fit_orientation, image_statistics
from training.scoring.ensemble import fit_stacking

REASONS = ("not-cxr", "anomaly", "low-confidence")
# Share of tuning images that may be flagged not-cxr: half the 2% allowed, because new patients
# shift every statistic a little (at 2% on the tuning split, 2.7% of test/ was flagged).
NOT_CXR_BUDGET = 0.01
ANOMALY_BUDGET = 0.05  # share of the tuning split's NORMAL images that may be flagged anomaly
ANY_FLAG_BUDGET = 0.10  # share of tuning images that may carry any flag
COMPONENTS = ("features", "thumbnail", "layout", "orientation", "saturation", "detail")
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


@dataclass
class Scores:
    """Per-image review scores of one model, (N,) each; see the module docstring."""

    ood: torch.Tensor
    anomaly: torch.Tensor
    confidence: torch.Tensor


@dataclass
class ReviewStats:
    """What a model needs to review its calls; travels in its checkpoint."""

    features: Gaussian
    thumbnails: Gaussian
    orientation: tuple[torch.Tensor, float]  # thumbnail weights and bias: logit of "turned"
    detail_median: float  # log fine detail of the training images
    centre: dict[str, float]  # per component, on the calibration split
    spread: dict[str, float]  # 90th percentile minus centre, floored by MIN_SPREAD
    ood_line: float  # the combined component score at which not-cxr fires
    anomaly_line: float  # the distance from NORMAL at which anomaly fires
    platt: tuple[float, float]  # calibrated logit = a * logit(P) + b
    confidence_line: float  # low-confidence below this
    calibrated_on: str  # "tuning split" or "training split"
    share: float  # the PNEUMONIA share the calibration assumes (0.5: classes weighed equally)

    def components(self, feats: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """(N, 6) raw distances from the training images, in COMPONENTS order."""
        stats = image_statistics(images)
        return torch.stack(
            [
                self.features.distance(feats).amin(1),
                self.thumbnails.distance(stats["thumbnail"])[:, 0],
                1 - correlation(stats["thumbnail"], self.thumbnails.means[0]),
                stats["thumbnail"] @ self.orientation[0] + self.orientation[1],
                stats["saturation"],
                (stats["detail"] - self.detail_median).abs(),
            ],
            1,
        )

    def ood_raw(self, components: torch.Tensor) -> torch.Tensor:
        centre = torch.tensor([self.centre[c] for c in COMPONENTS])
        spread = torch.tensor([self.spread[c] for c in COMPONENTS])
        return ((components - centre) / spread).amax(1)

    def input_scores(self, feats: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """(N, 2): the ood and anomaly scores, which depend on the input alone."""
        ood = self.ood_raw(self.components(feats, images)) / self.ood_line
        anomaly = self.features.distance(feats)[:, 0] / self.anomaly_line
        return torch.stack([ood, anomaly], 1)

    def confidence(
        self, prob: torch.Tensor, called: torch.Tensor, prevalence: float | None = None
    ) -> torch.Tensor:
        """The calibrated probability that each call is right. With a prevalence the calibrated
        log-odds move from the calibration split's PNEUMONIA share to it (Bayes' rule)."""
        shift = 0.0 if prevalence is None else float(_logit(torch.tensor(prevalence)))
        if prevalence is not None:
            shift -= float(_logit(torch.tensor(self.share)))
        calibrated = torch.sigmoid(self.platt[0] * _logit(prob) + self.platt[1] + shift)
        return torch.where(called, calibrated, 1 - calibrated).float()

    def scores(
        self, feats: torch.Tensor, images: torch.Tensor, prob: torch.Tensor, called: torch.Tensor
    ) -> Scores:
        ood, anomaly = self.input_scores(feats, images).unbind(1)
        return Scores(ood, anomaly, self.confidence(prob, called))

    def header(self) -> dict[str, Any]:
        return {
            "detail_median": self.detail_median,
            "centre": self.centre,
            "spread": self.spread,
            "ood_line": self.ood_line,
            "anomaly_line": self.anomaly_line,
            "platt": list(self.platt),
            "confidence_line": self.confidence_line,
            "calibrated_on": self.calibrated_on,
            "share": self.share,
        }

    def tensors(self) -> dict[str, torch.Tensor]:
        return {
            **self.features.tensors("features"),
            **self.thumbnails.tensors("thumbnails"),
            "orientation.weight": self.orientation[0],
            "orientation.bias": torch.tensor([self.orientation[1]]),
        }

    @classmethod
    def from_parts(cls, header: dict[str, Any], tensors: dict[str, torch.Tensor]) -> ReviewStats:
        return cls(
            Gaussian.from_tensors(tensors, "features"),
            Gaussian.from_tensors(tensors, "thumbnails"),
            (tensors["orientation.weight"], float(tensors["orientation.bias"][0])),
            float(header["detail_median"]),
            {k: float(v) for k, v in header["centre"].items()},
            {k: float(v) for k, v in header["spread"].items()},
            float(header["ood_line"]),
            float(header["anomaly_line"]),
            (float(header["platt"][0]), float(header["platt"][1])),
            float(header["confidence_line"]),
            str(header["calibrated_on"]),
            float(header["share"]),
        )


def _logit(p: torch.Tensor) -> torch.Tensor:
    p = p.double().clamp(1e-6, 1 - 1e-6)
    return torch.log(p) - torch.log1p(-p)


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


def flags(
    scores: Scores, called_pneumonia: torch.Tensor, confidence_line: float
) -> tuple[list[list[str]], torch.Tensor]:
    """(the reasons of each image, review_score): the largest ratio to any flag line."""
    anomaly = torch.where(called_pneumonia, torch.zeros_like(scores.anomaly), scores.anomaly)
    doubt = (1 - scores.confidence) / max(1 - confidence_line, 1e-6)
    ratios = torch.stack([scores.ood, anomaly, doubt], 1)
    reasons = [[r for r, v in zip(REASONS, row, strict=True) if v >= 1] for row in ratios.tolist()]
    return reasons, ratios.amax(1)


# Members holding at least this share of an ensemble's weight voting against its call make the
# call low-confidence, whatever the averaged confidence says.
DISSENT_LINE = 0.5


@dataclass
class Verdict:
    """One scorer's review of a batch: (N,) scores, the reasons for each image (empty: no
    flag) and review_score; disagreement only for ensembles."""

    ood: torch.Tensor
    anomaly: torch.Tensor
    confidence: torch.Tensor
    score: torch.Tensor
    reasons: list[list[str]]
    disagreement: torch.Tensor | None = None


def member_verdict(
    stats: ReviewStats,
    input_scores: torch.Tensor,
    prob: torch.Tensor,
    called: torch.Tensor,
    prevalence: float | None = None,
) -> Verdict:
    """A model's review of its own calls; input_scores (N, 2) from ReviewStats.input_scores,
    prob the model's own P(PNEUMONIA) (before any prevalence correction)."""
    ood, anomaly = input_scores.float().unbind(1)
    scores = Scores(ood, anomaly, stats.confidence(prob, called, prevalence))
    reasons, score = flags(scores, called, stats.confidence_line)
    return Verdict(ood, anomaly, scores.confidence, score, reasons)


def ensemble_verdict(
    members: list[Verdict],
    member_called: torch.Tensor,
    lines: list[float],
    weights: list[float],
    called: torch.Tensor,
) -> Verdict:
    """An ensemble's review of its combined calls, from its members' (those with statistics):
    not-cxr and anomaly when any member raises them; confidence the members' weighted
    calibrated probability of the combined call, low when below their weighted line or when
    members holding half the weight vote against the call (negative stacking weights count
    as 0; all zero: equal)."""
    w = torch.tensor(weights, dtype=torch.float64).clamp(min=0)
    w = (w if float(w.sum()) > 0 else torch.ones_like(w)) / max(float(w.sum()), 1e-12)
    w = w.float().view(-1, 1)
    ood = torch.stack([m.ood for m in members]).amax(0)
    anomaly = torch.stack([m.anomaly for m in members]).amax(0)
    # each member's calibrated P(PNEUMONIA), then of the ensemble's call
    p_pneumonia = torch.stack(
        [
            torch.where(c, m.confidence, 1 - m.confidence)
            for m, c in zip(members, member_called, strict=True)
        ]
    )
    confidence = (w * torch.where(called, p_pneumonia, 1 - p_pneumonia)).sum(0)
    disagreement = (w * (member_called != called).float()).sum(0)
    line = float((w.view(-1) * torch.tensor(lines)).sum())
    reasons, score = flags(Scores(ood, anomaly, confidence), called, line)
    dissent = disagreement / DISSENT_LINE
    for i, value in enumerate(dissent.tolist()):
        if value >= 1 and "low-confidence" not in reasons[i]:
            reasons[i].append("low-confidence")
    return Verdict(ood, anomaly, confidence, torch.maximum(score, dissent), reasons, disagreement)
