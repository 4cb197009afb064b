"""Prior (prevalence) correction: restate P(PNEUMONIA) for the prevalence a hospital expects.

A model's probabilities carry the class balance its loss saw (50/50 for the balanced presets).
Bayes' rule moves them to another prevalence P by shifting the log-odds by
logit(P) - logit(train_prior) (Saerens et al. 2002). Deciding the corrected probability at 0.5
is then the fewest-errors rule at that prevalence, where a model's stored threshold is the rule
balancing sensitivity and specificity.
"""

from __future__ import annotations

import torch

from training.fitting.logistic import logit
from training.scoring.answers import PREVALENCE_THRESHOLD

__all__ = ["PREVALENCE_THRESHOLD", "PrevalenceError", "prior_shift"]


class PrevalenceError(ValueError):
    user_error = True  # the CLI prints str(exc) as one line, no traceback


def prior_shift(prob: torch.Tensor, train_prior: float | None, prevalence: float) -> torch.Tensor:
    """P(PNEUMONIA) restated from the training prior to `prevalence` (both in (0, 1))."""
    if train_prior is None:
        raise PrevalenceError(
            "this model does not record the class balance it was trained on; "
            "retrain it to use --prevalence"
        )
    if not (0.0 < prevalence < 1.0 and 0.0 < train_prior < 1.0):
        raise PrevalenceError(f"prevalence must be strictly between 0 and 1, got {prevalence}")
    p = prob.double().clamp(1e-12, 1 - 1e-12)
    # Both priors are known to lie inside (0, 1): eps=0 leaves them unclamped.
    priors = logit(torch.tensor([prevalence, train_prior], dtype=torch.float64), eps=0.0)
    shifted = torch.logit(p) + float(priors[0] - priors[1])
    return torch.sigmoid(shifted).to(prob.dtype)
