"""Log-odds and the class-balanced logistic regression that the stacking, Platt and orientation
fits share.

from training.fitting.logistic import fit_balanced_logistic, logit
z = logit(prob)  # float64, probabilities clamped to [EPS, 1 - EPS] first
weights, bias = fit_balanced_logistic(x, labels, l2=1e-3)  # x (N, M), labels (N,) of 0/1
"""

from __future__ import annotations

import torch

# Keeps a probability of exactly 0 or 1 (a saturated model) at a finite log-odds.
EPS = 1e-6


def logit(p: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """log(p / (1 - p)) in float64, p clamped to [eps, 1 - eps]; eps=0 for a p already known
    to lie strictly inside (0, 1), which is then left as it is."""
    p = p.double().clamp(eps, 1 - eps)
    return torch.log(p) - torch.log1p(-p)


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
