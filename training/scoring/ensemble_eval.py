"""An ensemble on labelled images: its members' answers, and its scores as stored (weights, bias,
threshold) or as cross-fitted by stacking (training.scoring.ensemble_fit).

    members = member_answers(bundles, items)
    scores = scores_as_stored("vote", members, weights, bias=0.0, threshold=0.5)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from training.data.data_files import LabeledImage, kind_code
from training.evaluation.metrics import binary_scores, kind_scores
from training.models.checkpoint import ModelBundle
from training.scoring.ensemble import combine, combine_viral, ensemble_kind_threshold
from training.scoring.ensemble_fit import StackFit, cross_fitted, fit_stack
from training.scoring.files import score_files_multi


class Members(NamedTuple):
    """Members' answers on labelled images, unreadable ones dropped."""

    probs: torch.Tensor  # (M, N) P(PNEUMONIA)
    y: torch.Tensor  # (N,) labels
    groups: list[str]  # (N,) patients
    thresholds: list[float]
    viral: torch.Tensor  # (M, N) P(VIRAL | PNEUMONIA), NaN for a member with no kind head
    kinds: torch.Tensor  # (N,) 0 bacterial, 1 viral, -1 otherwise
    kind_cuts: list[float | None]  # None: no kind head


def member_answers(bundles: list[ModelBundle], items: list[LabeledImage]) -> Members:
    scored = score_files_multi(bundles, [i.path for i in items])
    keep = [p for p in range(len(items)) if p not in scored.errors]
    return Members(
        scored.probs[:, keep],
        torch.tensor([items[p].label for p in keep]),
        [items[p].patient for p in keep],
        [b.threshold for b in bundles],
        scored.viral[:, keep],
        torch.tensor([kind_code(items[p].path, items[p].label) for p in keep], dtype=torch.long),
        [None if b.kind_head == "none" else b.kind_threshold for b in bundles],
    )


def ensemble_kind_scores(members: Members, weights: list[float]) -> dict[str, Any]:
    """Bacterial vs viral of the ensemble's combined P(VIRAL | PNEUMONIA); {} when no member
    has a kind head."""
    viral = combine_viral(members.viral, weights)
    known = (members.kinds >= 0) & torch.isfinite(viral)
    if not bool(known.any()):
        return {}
    cut = ensemble_kind_threshold(members.kind_cuts, weights)
    return kind_scores(members.kinds[known], viral[known], cut)


def scores_as_stored(
    method: str, members: Members, weights: list[float], bias: float, threshold: float
) -> dict[str, Any]:
    """The ensemble's scores with its stored weights, bias and threshold, as served."""
    combined = combine(method, members.probs, weights, members.thresholds, bias)
    scores = binary_scores(members.y, combined, threshold)
    return {**scores, **ensemble_kind_scores(members, weights)}


def cross_fitted_scores(
    members: Members, folds: int, seed: int, select: bool
) -> tuple[dict[str, Any], StackFit, list[StackFit]]:
    """(the cross-fitted scores, the final fit on every image, the per-fold fits). Each patient
    group is scored by a fit (member selection included) that did not see it; the kind is not
    fitted (the weights are fitted for P(PNEUMONIA)) and is scored as combined."""
    probs, y, groups = members.probs, members.y, members.groups
    oof_prob, oof_label, fold_fits = cross_fitted(probs, y, groups, folds, seed, select)
    fit = fit_stack(probs, y, groups, select, folds, seed)
    scores = binary_scores(y, oof_prob, fit.threshold, pred=oof_label)
    kept = members._replace(
        viral=members.viral[fit.members], kind_cuts=[members.kind_cuts[n] for n in fit.members]
    )
    scores.update(ensemble_kind_scores(kept, fit.weights))
    return scores, fit, fold_fits
