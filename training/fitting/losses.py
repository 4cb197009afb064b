"""The training loss: BCE of P(PNEUMONIA), plus, with a kind head, BCE of P(VIRAL | PNEUMONIA)
over the batch's pneumonias of known kind.

from training.fitting.losses import combined_loss, kind_loss_function, loss_function
loss_fn, kind_fn = loss_function(config, labels), kind_loss_function(config, kinds)
loss = combined_loss(model(x), target, batch_kinds, loss_fn, kind_fn)
"""

from __future__ import annotations

import torch
from torch import nn

from training.fitting.config import TrainConfig
from training.models.registry import split_logits


def loss_function(config: TrainConfig, labels: torch.Tensor) -> nn.Module:
    """BCE; with balance="weight" positives are down-weighted so both classes weigh the same."""
    if config.balance != "weight":
        return nn.BCEWithLogitsLoss()
    n_pos = labels.sum().clamp(min=1)
    return nn.BCEWithLogitsLoss(pos_weight=(labels.numel() - n_pos) / n_pos)


def kind_loss_function(config: TrainConfig, kinds: torch.Tensor) -> nn.Module:
    """BCE of P(VIRAL | PNEUMONIA) per image: `combined_loss` sums it over the pneumonias of
    known kind and divides by the whole batch, so such a pneumonia weighs what its binary term
    does (with the 3-way head, the two terms add up to its cross-entropy). balance="weight"
    weighs viral and bacterial alike."""
    if config.balance != "weight":
        return nn.BCEWithLogitsLoss(reduction="none")
    n_viral = (kinds == 1).sum().clamp(min=1)
    return nn.BCEWithLogitsLoss(reduction="none", pos_weight=(kinds == 0).sum() / n_viral)


def combined_loss(
    out: torch.Tensor,
    target: torch.Tensor,
    kinds: torch.Tensor,
    loss_fn: nn.Module,
    kind_loss_fn: nn.Module,
) -> torch.Tensor:
    """The binary loss, plus the kind's over the batch's pneumonias of known kind."""
    logit, viral_logit = split_logits(out.float())
    loss = loss_fn(logit, target)
    if viral_logit is not None:
        # A mask, not a selection: selecting would make a GPU wait for the count every batch.
        per_image = kind_loss_fn(viral_logit, kinds.clamp(min=0).to(viral_logit.dtype))
        known = torch.where(kinds >= 0, per_image, torch.zeros_like(per_image))
        loss = loss + known.sum() / kinds.numel()
    return loss
