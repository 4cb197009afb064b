"""A site's decision threshold, chosen so that a target sensitivity holds with margin on new
patients, and the interval of what it gives: a bootstrap over the site's *patients*.

from training.fitting.site_threshold import patient_weights, margin_threshold
weights = patient_weights(patient_index, n_boot=2000, seed=0)  # (B, N) image weights
choice = margin_threshold(labels, prob, weights, target=0.95)
choice.threshold, choice.sensitivity_interval, choice.specificity_interval

Images of one child are not independent: resampling patients (each drawn patient brings all
its images) gives intervals that do not pretend a child X-rayed five times is five children.
The threshold is the highest one whose 5th-percentile sensitivity over the resamples is at
least the target, so the target holds on 95% of patient samples like this one, not just on
average.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

LOWER_QUANTILE = 0.05  # the margin: the target must hold at this quantile of the resamples
INTERVAL = (0.025, 0.975)  # the stated 95% interval


class SiteFitError(ValueError):
    """The site's images cannot support the profile asked for."""

    user_error = True  # the CLI prints str(exc) as one line, no traceback


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen threshold on P, what it gives on the site's images, and its intervals."""

    threshold: float
    sensitivity: float
    specificity: float
    sensitivity_interval: tuple[float, float]  # 95% interval of the site's true rates
    specificity_interval: tuple[float, float]
    sensitivity_lower: float  # the LOWER_QUANTILE the rule held to the target
    # 95% intervals of what a new set of this many patients will show: its own sampling on
    # top of this one's (two independent resamples: b1 + b2 - point).
    sensitivity_prediction: tuple[float, float] = (math.nan, math.nan)
    specificity_prediction: tuple[float, float] = (math.nan, math.nan)


def patient_weights(patients: torch.Tensor, n_boot: int = 2000, seed: int = 0) -> torch.Tensor:
    """(n_boot, N) weights of each image in each resample: how often its patient was drawn
    when the P patients (`patients` holds each image's index in 0..P-1) are drawn P times with
    replacement."""
    n_patients = int(patients.max()) + 1 if patients.numel() else 0
    generator = torch.Generator().manual_seed(seed)
    draws = torch.randint(n_patients, (n_boot, n_patients), generator=generator)
    counts = torch.zeros(n_boot, n_patients, dtype=torch.float64)
    counts.scatter_add_(1, draws, torch.ones_like(draws, dtype=torch.float64))
    return counts[:, patients]


def rates(
    labels: torch.Tensor, prob: torch.Tensor, weights: torch.Tensor, cuts: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sensitivity, specificity), each (B, C): for every resample (a row of weights) and
    every cut, the weighted share of positives with P >= cut and of negatives with P < cut.
    A resample without a positive (or negative) gives NaN there."""
    y = labels.bool()
    p = prob.double()
    called = (p.view(-1, 1) >= cuts.double().view(1, -1)).double()  # (N, C)
    w_pos, w_neg = weights[:, y], weights[:, ~y]
    sens = (w_pos @ called[y]) / w_pos.sum(1, keepdim=True)
    spec = (w_neg @ (1 - called[~y])) / w_neg.sum(1, keepdim=True)
    return sens, spec


def min_positive_patients(target: float) -> int:
    """The fewest PNEUMONIA patients on which a target can be told apart from catching
    everyone: one missed patient must still leave the target met (20 for 0.95)."""
    return math.ceil(1.0 / (1.0 - target) - 1e-9)


def margin_threshold(
    labels: torch.Tensor, prob: torch.Tensor, weights: torch.Tensor, target: float
) -> ThresholdChoice:
    """The highest threshold whose LOWER_QUANTILE sensitivity over the resamples reaches the
    target, placed midway down to the next lower score seen (so the images it was fitted on
    are called the same, and a new image a hair below the lowest caught positive still is).

    Raises SiteFitError when only calling every image PNEUMONIA reaches the target."""
    p = prob.double()
    cuts = torch.unique(p[labels.bool()]).flip(0)  # every positive's score, highest first
    sens, spec = rates(labels, p, weights, cuts)
    lower = torch.nanquantile(sens, LOWER_QUANTILE, dim=0)
    meets = (lower >= target - 1e-12).nonzero().flatten()
    negatives = p[~labels.bool()]
    if meets.numel() == 0 or not bool((negatives < cuts[meets[0]]).any()):
        raise SiteFitError(
            f"no threshold keeps sensitivity >= {target:g} at the {LOWER_QUANTILE:.0%} quantile "
            "of the patient bootstrap without calling every NORMAL image PNEUMONIA; add "
            "patients or lower --target-sensitivity"
        )
    k = int(meets[0])
    threshold = float((cuts[k] + p[p < cuts[k]].max()) / 2)
    return choice_at(labels, p, weights, threshold, float(lower[k]))


def choice_at(
    labels: torch.Tensor,
    prob: torch.Tensor,
    weights: torch.Tensor,
    threshold: float,
    sensitivity_lower: float | None = None,
) -> ThresholdChoice:
    """What a threshold gives on the site's images, with the resamples' 95% intervals."""
    cut = torch.tensor([threshold], dtype=torch.float64)
    point_sens, point_spec = rates(labels, prob, torch.ones(1, prob.numel()).double(), cut)
    sens, spec = rates(labels, prob, weights, cut)
    q = torch.tensor(INTERVAL, dtype=torch.float64)

    def interval(values: torch.Tensor) -> tuple[float, float]:
        low, high = torch.nanquantile(values[:, 0], q).tolist()
        return low, high

    def prediction(values: torch.Tensor, point: torch.Tensor) -> tuple[float, float]:
        v = values[:, 0]
        paired = v + v.roll(v.numel() // 2) - point[0, 0]  # resample i with an independent one
        low, high = torch.nanquantile(paired.clamp(0, 1), q).tolist()
        return low, high

    lower = sensitivity_lower
    if lower is None:
        lower = float(torch.nanquantile(sens[:, 0], LOWER_QUANTILE))
    return ThresholdChoice(
        threshold=threshold,
        sensitivity=float(point_sens[0, 0]),
        specificity=float(point_spec[0, 0]),
        sensitivity_interval=interval(sens),
        specificity_interval=interval(spec),
        sensitivity_lower=lower,
        sensitivity_prediction=prediction(sens, point_sens),
        specificity_prediction=prediction(spec, point_spec),
    )
