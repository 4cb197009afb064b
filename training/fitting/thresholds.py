"""A model's decision thresholds: the single-model rules, and the choice `fit` makes with them
on the tuning split.

from training.fitting.thresholds import balanced_threshold, sensitivity_threshold
cut = balanced_threshold(labels, prob)  # max sensitivity + specificity (Youden's J)
cut = sensitivity_threshold(labels, prob, 0.95)  # the highest cut keeping 95% of positives

`balanced_threshold` keeps the threshold from being tuned for accuracy on a 74% PNEUMONIA split.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from training.data.preprocess import Normalizer
from training.fitting.config import TrainConfig
from training.fitting.errors import TrainingDataError
from training.fitting.outputs import finite_outputs
from training.fitting.training_data import DecodedSplit


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


def choose_thresholds(
    config: TrainConfig, model: nn.Module, tune: DecodedSplit | None, normalizer: Normalizer
) -> tuple[float, float]:
    """(the decision threshold, the kind threshold), from one pass over the tuning split.

    The kind threshold balances viral and bacterial recall on the tuning split's pneumonias of
    known kind; 0.5 without a tuning split or without a kind head."""
    by_rule = config.threshold in ("balanced", "sensitivity")
    if by_rule and tune is None:
        raise TrainingDataError(
            f'threshold "{config.threshold}" needs a tuning split (tune_fraction > 0)'
        )
    known = tune.kinds >= 0 if tune is not None else None
    by_kind = config.kind_head != "none" and known is not None and bool(known.any())
    if not (by_rule or by_kind):
        return float(config.threshold), 0.5
    prob, viral = finite_outputs(model, tune, normalizer, config, "on the tuning split")
    kind_cut = balanced_threshold(tune.kinds[known], viral[known]) if by_kind else 0.5
    if not by_rule:
        return float(config.threshold), kind_cut
    if config.threshold == "sensitivity":
        return sensitivity_threshold(tune.labels, prob, config.target_sensitivity), kind_cut
    return balanced_threshold(tune.labels, prob), kind_cut
