"""What a model in training says about a decoded split, refused when it is not a number, and
the scores `fit` reports from it.

from training.fitting.outputs import auc, evaluate, finite_outputs
prob, viral = finite_outputs(model, split, normalizer, config, "on the tuning split")
val_auc = auc(model, split, normalizer, config, "on validation after epoch 3")
scores = evaluate(model, split, bundle, config)  # binary (and kind) scores, "roc" points
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from training.data.preprocess import Normalizer
from training.evaluation.curves import roc_points
from training.evaluation.metrics import binary_scores, kind_scores, roc_auc
from training.fitting.config import TrainConfig
from training.fitting.errors import diverged
from training.fitting.training_data import DecodedSplit
from training.models.checkpoint import ModelBundle
from training.scoring.inference import predict_outputs


def finite_outputs(
    model: nn.Module, data: DecodedSplit, normalizer: Normalizer, config: TrainConfig, where: str
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(P(PNEUMONIA), P(VIRAL | PNEUMONIA) or None) on a split, or TrainingDiverged: a step can
    blow the weights up (NaN or infinite outputs) while the loss it was taken from was finite."""
    prob, viral = predict_outputs(model, data.images, normalizer)
    for p in (prob, viral) if viral is not None else (prob,):
        bad = int((~torch.isfinite(p)).sum())
        if bad:
            what = f"the model's output is not a number for {bad} of {p.numel()} images"
            raise diverged(what, where, config)
    return prob, viral


def finite_proba(
    model: nn.Module, data: DecodedSplit, normalizer: Normalizer, config: TrainConfig, where: str
) -> torch.Tensor:
    """P(PNEUMONIA) on a split, or TrainingDiverged (see `finite_outputs`)."""
    return finite_outputs(model, data, normalizer, config, where)[0]


def auc(
    model: nn.Module, data: DecodedSplit, normalizer: Normalizer, config: TrainConfig, where: str
) -> float:
    """ROC AUC of P(PNEUMONIA) on a split, or TrainingDiverged."""
    return roc_auc(data.labels, finite_proba(model, data, normalizer, config, where))


def evaluate(
    model: nn.Module, data: DecodedSplit, bundle: ModelBundle, config: TrainConfig
) -> dict[str, Any]:
    """Binary scores at the bundle's threshold, and the kind's at its kind threshold; "roc"
    holds the ROC curve's points (the reports draw it)."""
    prob, viral = finite_outputs(model, data, bundle.normalizer, config, "on evaluation")
    scores = binary_scores(data.labels, prob, bundle.threshold)
    if viral is not None:
        scores.update(kind_scores(data.kinds, viral, bundle.kind_threshold))
    points = roc_points(data.labels.tolist(), prob.tolist())
    scores["roc"] = [[round(x, 4), round(y, 4)] for x, y in points]
    return scores
