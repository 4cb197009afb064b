"""What a model keeps to review its own calls (it travels in its checkpoint), and the per-image
scores it gives: out-of-distribution, anomaly and confidence.

from training.review.stats import ReviewStats
stats = bundle.review  # fitted by training.fitting.review_fit
scores = stats.scores(feats, images, prob, called)  # Scores: ood, anomaly, confidence (N,)
header, tensors = stats.header(), stats.tensors()  # and back: ReviewStats.from_parts(...)

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

`ood` and `anomaly` are scaled so a flag fires at 1; the flags themselves are
training.review.verdicts'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from training.fitting.logistic import logit
from training.review.features import Gaussian, correlation, image_statistics

COMPONENTS = ("features", "thumbnail", "layout", "orientation", "saturation", "detail")


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
    spread: dict[str, float]  # 90th percentile minus centre, floored by MIN_SPREAD (review_fit)
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
        shift = 0.0 if prevalence is None else float(logit(torch.tensor(prevalence)))
        if prevalence is not None:
            shift -= float(logit(torch.tensor(self.share)))
        calibrated = torch.sigmoid(self.platt[0] * logit(prob) + self.platt[1] + shift)
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
