"""Combining models: the seed's weighted vote, and stacking fitted on a validation split.

- `weighted_vote`: each member votes its label at its own threshold; the score is the weighted
  share of PNEUMONIA votes and the label is PNEUMONIA when that share is over one half. With the
  seed weights (MLP, CNN, ResNet50 0.5; GoogLeNet 0.51) GoogLeNet breaks 2-2 ties.
- `stack`: P = sigmoid(sum_i w_i * logit(p_i) + b), a logistic regression on member logits; it
  calibrates and weights in one step. `fit_stacking` fits w, b with a small L2 penalty.
- `balanced_threshold`: the cut that maximises sensitivity + specificity (Youden's J), so the
  threshold is not tuned for accuracy on a 74% PNEUMONIA split.

Fitting on a split and scoring it honestly (cross-fitting, member selection): `ensemble_fit`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

EPS = 1e-6


def logit(p: torch.Tensor) -> torch.Tensor:
    p = p.double().clamp(EPS, 1 - EPS)
    return torch.log(p) - torch.log1p(-p)


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


def fit_balanced_logistic(
    x: torch.Tensor, y: torch.Tensor, l2: float = 1e-2, steps: int = 200
) -> tuple[torch.Tensor, float]:
    """A logistic regression on x (N, M): weights (M,) and bias minimising class-balanced log
    loss (+ L2 on the weights), starting from equal weights."""
    x = x.double()
    target = y.double()
    n_pos = target.sum().clamp(min=1)
    n_neg = (1 - target).sum().clamp(min=1)
    # Each class weighs the same, so the fit does not favour the majority class.
    sample_w = torch.where(target > 0, 0.5 / n_pos, 0.5 / n_neg)
    w = torch.full((x.shape[1],), 1.0 / x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        z = x @ w + b
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            z, target, weight=sample_w, reduction="sum"
        )
        loss = loss + l2 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), float(b.detach())


def balanced_threshold(y: torch.Tensor, prob: torch.Tensor) -> float:
    """The threshold maximising sensitivity + specificity (the lowest such score on ties), placed
    midway between that score and the next lower one rather than on a sample."""
    y = y.long()
    p = prob.double()
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    if n_pos == 0 or n_neg == 0:
        return 0.5
    candidates = torch.unique(p)  # sorted ascending
    # For every candidate t at once: positives with p >= t, negatives with p < t.
    tp = n_pos - torch.searchsorted(torch.sort(p[y == 1]).values, candidates)
    tn = torch.searchsorted(torch.sort(p[y == 0]).values, candidates)
    j = tp.double() / n_pos + tn.double() / n_neg
    k = int(torch.argmax(j))  # the first maximum: the lowest threshold among ties
    best = candidates[k]
    return float((best + candidates[k - 1]) / 2) if k > 0 else float(best)


def sensitivity_threshold(y: torch.Tensor, prob: torch.Tensor, target: float) -> float:
    """The highest threshold that still calls at least `target` of the positives PNEUMONIA:
    a screening rule. On a near-separable tuning split the balanced rule lands anywhere in a wide
    gap (0.02 for one model); this one is pinned to the positives' own score distribution."""
    pos = torch.sort(prob[y.long() == 1].double()).values
    if pos.numel() == 0:
        return 0.5
    # Positives at or above pos[k] are n - k: keep k = floor((1 - target) * n) below the cut.
    k = min(int(math.floor((1.0 - target) * pos.numel() + 1e-9)), pos.numel() - 1)
    return float(pos[k])


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
