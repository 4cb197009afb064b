"""Combining models: the seed's weighted vote, and stacking fitted on a validation split.

- `weighted_vote`: each member votes its label at its own threshold; the score is the weighted
  share of PNEUMONIA votes and the label is PNEUMONIA when that share is over one half. With the
  seed weights (MLP, CNN, ResNet50 0.5; GoogLeNet 0.51) GoogLeNet breaks 2-2 ties.
- `stack`: P = sigmoid(sum_i w_i * logit(p_i) + b), a logistic regression on member logits; it
  calibrates and weights in one step. `fit_stacking` fits w, b with a small L2 penalty.

Fitting on a split and scoring it honestly (cross-fitting, member selection): `ensemble_fit`;
the threshold rules (`balanced_threshold`) and `logit`: training.fitting.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from training.fitting.logistic import fit_balanced_logistic, logit


def weighted_vote(
    probs: torch.Tensor, weights: Sequence[float], thresholds: Sequence[float]
) -> torch.Tensor:
    """probs (M, N) -> weighted share of PNEUMONIA votes (N,); PNEUMONIA when > 0.5."""
    w = torch.tensor(weights, dtype=torch.float64).view(-1, 1)
    t = torch.tensor(thresholds, dtype=torch.float64).view(-1, 1)
    votes = (probs.double() >= t).double()
    return (w * votes).sum(0) / w.sum()


def stack(probs: torch.Tensor, weights: Sequence[float], bias: float) -> torch.Tensor:
    """probs (M, N) -> stacked P(PNEUMONIA) (N,)."""
    w = torch.tensor(weights, dtype=torch.float64).view(-1, 1)
    return torch.sigmoid((w * logit(probs)).sum(0) + bias)


def fit_stacking(
    probs: torch.Tensor, y: torch.Tensor, l2: float = 1e-2, steps: int = 200
) -> tuple[list[float], float]:
    """Member weights and bias minimising class-balanced log loss (+ L2 on the weights)."""
    w, b = fit_balanced_logistic(logit(probs).T, y, l2, steps)
    return [float(v) for v in w], b


def combine(
    method: str,
    probs: torch.Tensor,
    weights: Sequence[float],
    member_thresholds: Sequence[float],
    bias: float = 0.0,
) -> torch.Tensor:
    """The ensemble's score for member probabilities (M, N) by its method."""
    if method == "vote":
        return weighted_vote(probs, weights, member_thresholds)
    if method == "stacking":
        return stack(probs, weights, bias)
    raise ValueError(f"unknown ensemble method {method!r}")


def combine_viral(viral: torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
    """An ensemble's P(VIRAL | PNEUMONIA): its members' weighted mean, over the members that
    answer it (a kind head), each weighted as the ensemble weighs it (negative weights count
    as 0; where every member that answers weighs 0, their plain mean). NaN where no member
    answers."""
    answered = torch.isfinite(viral).double()
    w = torch.tensor(list(weights), dtype=torch.float64).clamp(min=0).view(-1, 1) * answered
    w = torch.where(w.sum(0) > 0, w, answered)
    total = w.sum(0)
    mean = (w * torch.nan_to_num(viral)).sum(0) / total.clamp(min=1e-12)
    return torch.where(total > 0, mean, torch.full_like(mean, float("nan")))


def ensemble_kind_threshold(cuts: Sequence[float | None], weights: Sequence[float]) -> float:
    """The ensemble decides VIRAL at its members' kind thresholds (None: a member with no kind
    head), weighted as combine_viral weighs their P(VIRAL | PNEUMONIA)."""
    values = torch.tensor([[float("nan") if c is None else c] for c in cuts], dtype=torch.float64)
    cut = float(combine_viral(values, weights)[0])
    return 0.5 if math.isnan(cut) else cut
