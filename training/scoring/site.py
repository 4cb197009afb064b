"""Scoring under a site profile (fitted by training.fitting.site_fit): P recalibrated for the
site, decided at the site's threshold, and reviewed with the site's lines.

from training.scoring.site import SiteOperatingPoint
site = SiteOperatingPoint.from_profile(profile_id, profile_json)
site_p = site.calibrated(prob)        # what the prediction rows store
review = site.review_stats(bundle.review)  # the model's statistics with the site's lines
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from training.fitting.logistic import logit
from training.review.stats import ReviewStats


@dataclass(frozen=True)
class SiteOperatingPoint:
    """What scoring needs of a site profile."""

    profile_id: int
    threshold: float  # on the site-calibrated P
    platt: tuple[float, float]  # site P = sigmoid(a * logit(P) + b), at the site's prevalence
    prevalence: float
    review: dict[str, float] | None  # ood_scale, anomaly_scale, confidence_line
    kind_threshold: float | None  # None: the model's own

    @classmethod
    def from_profile(cls, profile_id: int, profile: dict[str, Any]) -> SiteOperatingPoint:
        return cls(
            profile_id=profile_id,
            threshold=float(profile["threshold"]),
            platt=(float(profile["platt"][0]), float(profile["platt"][1])),
            prevalence=float(profile["prevalence"]),
            review=profile.get("review"),
            kind_threshold=profile.get("kind_threshold"),
        )

    def calibrated(self, prob: torch.Tensor) -> torch.Tensor:
        """P restated as the site's calibration says (NaN stays NaN)."""
        site = torch.sigmoid(self.platt[0] * logit(prob.double()) + self.platt[1])
        return site.to(prob.dtype)

    def review_stats(self, stats: ReviewStats) -> ReviewStats:
        """The model's review statistics with the site's calibration and low-confidence line:
        the confidence of a call is then the site-calibrated P of it (given the model's raw P)."""
        line = stats.confidence_line if self.review is None else self.review["confidence_line"]
        return replace(
            stats,
            platt=self.platt,
            share=self.prevalence,
            confidence_line=line,
            calibrated_on="site",
        )

    def input_scores(self, scores: torch.Tensor) -> torch.Tensor:
        """(N, 2) ood and anomaly scores on the site's lines (each fires at 1 there), from
        the model's (ReviewStats.input_scores)."""
        if self.review is None:
            return scores
        scale = torch.tensor([self.review["ood_scale"], self.review["anomaly_scale"]])
        return scores / scale.to(scores.dtype)
