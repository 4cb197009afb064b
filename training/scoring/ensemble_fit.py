"""Fitting a stacked ensemble on a labelled split, and scoring that fit honestly.

- `fit_stack`: stacking weights, bias and a balanced threshold; with `select`, first a greedy
  forward selection of members by cross-fitted ROC AUC (members that add nothing are dropped).
- `cross_fitted`: out-of-fold scores by patient group. Every step that looks at labels (member
  selection included) is redone inside each fold, so the scores are not fitted to what they
  measure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from training.evaluation.metrics import roc_auc
from training.fitting.thresholds import balanced_threshold
from training.scoring.ensemble import fit_stacking, stack


@dataclass
class StackFit:
    """A fitted stacking ensemble over `members` (row indices into the members' probabilities)."""

    members: list[int]
    weights: list[float]
    bias: float
    threshold: float

    def predict(self, probs: torch.Tensor) -> torch.Tensor:
        return stack(probs[self.members], self.weights, self.bias)


def group_folds(groups: Sequence[str], k: int, seed: int) -> list[torch.Tensor]:
    """k boolean masks over the samples; every group (patient) sits in exactly one fold."""
    unique = sorted(set(groups))
    order = torch.randperm(len(unique), generator=torch.Generator().manual_seed(seed)).tolist()
    fold_of = {unique[i]: rank % k for rank, i in enumerate(order)}
    ids = torch.tensor([fold_of[g] for g in groups])
    return [ids == f for f in range(k)]


def fit_stack(
    probs: torch.Tensor,
    y: torch.Tensor,
    groups: Sequence[str],
    select: bool = False,
    k: int = 5,
    seed: int = 0,
) -> StackFit:
    """Stacking over all members, or over the members `select_members` keeps."""
    members = select_members(probs, y, groups, k, seed) if select else list(range(len(probs)))
    weights, bias = fit_stacking(probs[members], y)
    threshold = balanced_threshold(y, stack(probs[members], weights, bias))
    return StackFit(members, weights, bias, threshold)


def cross_fitted(
    probs: torch.Tensor,
    y: torch.Tensor,
    groups: Sequence[str],
    k: int = 5,
    seed: int = 0,
    select: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, list[StackFit]]:
    """Out-of-fold stacked probabilities and labels, and the fit made for each fold: each fold
    is predicted by a fit (selection, weights, threshold) made on the other folds only."""
    oof_prob = torch.empty(y.numel(), dtype=torch.float64)
    oof_label = torch.empty(y.numel(), dtype=torch.long)
    fits = []
    for held in group_folds(groups, k, seed):
        rest = [g for g, h in zip(groups, held.tolist(), strict=True) if not h]
        fit = fit_stack(probs[:, ~held], y[~held], rest, select, k, seed)
        oof_prob[held] = fit.predict(probs[:, held])
        oof_label[held] = (oof_prob[held] >= fit.threshold).long()
        fits.append(fit)
    return oof_prob, oof_label, fits


# The smallest AUC gain that earns a member its place. Refitting alone moves a cross-fitted AUC
# by a few 1e-5 (a duplicated member "gains" 5e-5 in the tests), and every extra member costs
# scoring time.
MIN_AUC_GAIN = 1e-4


def select_members(
    probs: torch.Tensor, y: torch.Tensor, groups: Sequence[str], k: int = 5, seed: int = 0
) -> list[int]:
    """Greedy forward selection: add the member that most raises the cross-fitted AUC of the
    stack so far; stop when none raises it by MIN_AUC_GAIN. Ties go to the lower index."""
    chosen: list[int] = []
    best = float("-inf")
    while len(chosen) < len(probs):
        trials = []
        for m in range(len(probs)):
            if m not in chosen:
                subset = chosen + [m]
                oof_prob, _, _ = cross_fitted(probs[subset], y, groups, k, seed)
                trials.append((roc_auc(y, oof_prob), -m))
        score, neg_m = max(trials)
        if score < best + MIN_AUC_GAIN:
            break
        chosen.append(-neg_m)
        best = score
    return sorted(chosen)
