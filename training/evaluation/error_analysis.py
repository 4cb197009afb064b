"""Where a model loses accuracy on new patients: ranking or operating point, calibration, and
errors by group. Pure functions over labels and probabilities; scripts/external_diagnosis.py
prints them for a stored model on its validation split and an external folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from training.evaluation.metrics import binary_scores, roc_auc
from training.fitting.thresholds import sensitivity_threshold


def specificity_at_sensitivity(y: torch.Tensor, prob: torch.Tensor, sensitivity: float) -> float:
    """The specificity of the highest threshold that still reaches `sensitivity`: a pure
    ranking figure, free of any chosen threshold."""
    y, prob = torch.as_tensor(y).long(), torch.as_tensor(prob).double()
    cut = sensitivity_threshold(y, prob, sensitivity)
    return float((prob[y == 0] < cut).double().mean())


def operating_points(y: torch.Tensor, prob: torch.Tensor, threshold: float) -> dict[str, Any]:
    """AUC, scores at the model's threshold, and specificity at fixed sensitivities."""
    scores = binary_scores(y, prob, threshold)
    return {
        "n": scores["n"],
        "pneumonia_share": float(torch.as_tensor(y).double().mean()),
        "roc_auc": roc_auc(y, prob),
        "accuracy": scores["accuracy"],
        "sensitivity": scores["sensitivity"],
        "specificity": scores["specificity"],
        "spec_at_sens_0.95": specificity_at_sensitivity(y, prob, 0.95),
        "spec_at_sens_0.90": specificity_at_sensitivity(y, prob, 0.90),
        "mean_prob_normal": float(torch.as_tensor(prob)[torch.as_tensor(y) == 0].mean()),
    }


def calibration_table(
    y: torch.Tensor, prob: torch.Tensor, edges: Sequence[float] = (0, 0.1, 0.3, 0.5, 0.7, 0.9, 1)
) -> list[dict[str, Any]]:
    """Per probability bin: how many images, their mean P, and the observed PNEUMONIA share."""
    y, prob = torch.as_tensor(y).double(), torch.as_tensor(prob).double()
    rows = []
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        inside = (prob >= low) & ((prob < high) if high < 1 else (prob <= high))
        n = int(inside.sum())
        rows.append(
            {
                "bin": f"{low:.1f}-{high:.1f}",
                "n": n,
                "mean_p": float(prob[inside].mean()) if n else None,
                "observed": float(y[inside].mean()) if n else None,
            }
        )
    return rows


def errors_by_group(
    y: torch.Tensor, prob: torch.Tensor, threshold: float, groups: Sequence[str]
) -> list[dict[str, Any]]:
    """Error rate at the threshold within each group (e.g. NORMAL / bacteria / virus)."""
    y, prob = torch.as_tensor(y).long(), torch.as_tensor(prob).double()
    wrong = (prob >= threshold).long() != y
    rows = []
    for name in sorted(set(groups)):
        inside = torch.tensor([g == name for g in groups])
        rows.append(
            {
                "group": name,
                "n": int(inside.sum()),
                "error_rate": float(wrong[inside].double().mean()),
            }
        )
    return rows


def quartile_groups(values: Sequence[float], name: str) -> list[str]:
    """Label each value by its quartile ('brightness Q1'...), cut at the values' own quartiles."""
    v = torch.as_tensor(values, dtype=torch.float64)
    cuts = torch.quantile(v, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    return [f"{name} Q{int((x > cuts).sum()) + 1}" for x in v]
