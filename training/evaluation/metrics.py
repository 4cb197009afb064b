"""Binary classification scores with PNEUMONIA (label 1) as the positive class."""

from __future__ import annotations

from collections.abc import Sequence

import torch

SCORE_KEYS = (
    "f1",
    "precision",
    "sensitivity",
    "specificity",
    "accuracy",
    "roc_auc",
    "tp",
    "fp",
    "tn",
    "fn",
    "threshold",
    "n",
)


def _ratio(num: int, den: int) -> float:
    # An empty denominator scores 0 rather than NaN so a degenerate model never looks good.
    return num / den if den else 0.0


def _finite(prob: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """prob as a float64 vector; ValueError if any is NaN or infinite. NaN ties with
    everything when ranked, so a diverged model would score AUC 1.0 and look perfect."""
    p = torch.as_tensor(prob, dtype=torch.float64).flatten()
    bad = int((~torch.isfinite(p)).sum())
    if bad:
        raise ValueError(f"{bad} of {p.numel()} probabilities are not finite numbers")
    return p


def roc_auc(y_true: Sequence[int] | torch.Tensor, prob: Sequence[float] | torch.Tensor) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic (ties count one half).

    Returns NaN when only one class is present, where AUC is undefined; raises ValueError for
    NaN or infinite probabilities.
    """
    y = torch.as_tensor(y_true, dtype=torch.long).flatten()
    p = _finite(prob)
    n_pos = int(y.sum())
    n_neg = y.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = torch.argsort(p)
    sorted_p = p[order]
    ranks = torch.empty_like(p)
    ranks[order] = torch.arange(1, p.numel() + 1, dtype=torch.float64)
    # Average the ranks of tied scores.
    _, inverse, counts = torch.unique_consecutive(sorted_p, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    mean_rank = ends - (counts.double() - 1) / 2
    ranks[order] = mean_rank[inverse]
    u = ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def binary_scores(
    y_true: Sequence[int] | torch.Tensor,
    prob: Sequence[float] | torch.Tensor,
    threshold: float = 0.5,
    pred: Sequence[int] | torch.Tensor | None = None,
) -> dict[str, float | int]:
    """Every score cxrq stores: F1, precision, sensitivity, specificity, accuracy, AUC, counts.

    Labels are prob >= threshold, unless `pred` gives them (e.g. out-of-fold decisions).
    NaN or infinite probabilities are a ValueError (a NaN would count as NORMAL).
    """
    y = torch.as_tensor(y_true, dtype=torch.long).flatten()
    p = _finite(prob)
    if y.numel() != p.numel():
        raise ValueError(f"{y.numel()} labels but {p.numel()} probabilities")
    pred = (p >= threshold).long() if pred is None else torch.as_tensor(pred).long().flatten()
    tp = int(((pred == 1) & (y == 1)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    tn = int(((pred == 0) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    precision = _ratio(tp, tp + fp)
    sensitivity = _ratio(tp, tp + fn)
    return {
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "precision": precision,
        "sensitivity": sensitivity,
        "specificity": _ratio(tn, tn + fp),
        "accuracy": _ratio(tp + tn, y.numel()),
        "roc_auc": roc_auc(y, p),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "threshold": float(threshold),
        "n": int(y.numel()),
    }


def paired_auc_bootstrap(
    y: torch.Tensor,
    prob_a: torch.Tensor,
    prob_b: torch.Tensor,
    groups: Sequence[str],
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, float]:
    """AUC(a) - AUC(b) with a 95% interval from resampling patients (groups) with replacement,
    both scorers on the same resample, and the share of resamples where a is at least b."""
    patients = sorted(set(groups))
    rows: dict[str, list[int]] = {p: [] for p in patients}
    for i, g in enumerate(groups):
        rows[g].append(i)
    gen = torch.Generator().manual_seed(seed)
    diffs = []
    for _ in range(n_boot):
        pick = torch.randint(len(patients), (len(patients),), generator=gen).tolist()
        ix = torch.tensor([i for p in pick for i in rows[patients[p]]])
        if y[ix].min() == y[ix].max():
            continue  # one class only: AUC undefined on this resample
        diffs.append(roc_auc(y[ix], prob_a[ix]) - roc_auc(y[ix], prob_b[ix]))
    d = torch.tensor(diffs, dtype=torch.float64)
    low, high = torch.quantile(d, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return {
        "diff": roc_auc(y, prob_a) - roc_auc(y, prob_b),
        "low": low,
        "high": high,
        "p_a_at_least_b": float((d >= 0).double().mean()),
    }


def kind_scores(
    kinds: Sequence[int] | torch.Tensor,
    prob_viral: Sequence[float] | torch.Tensor,
    threshold: float = 0.5,
) -> dict[str, float | int | None]:
    """Accuracy, sensitivity and specificity for VIRAL (viral called viral, bacterial called
    bacterial) and the AUC of P(VIRAL | PNEUMONIA), over the images with a known kind (codes 0
    bacterial, 1 viral; -1 is left out). Every value is None when no image has a known kind."""
    k = torch.as_tensor(kinds, dtype=torch.long).flatten()
    p = torch.as_tensor(prob_viral, dtype=torch.float64).flatten()
    known = k >= 0
    if not bool(known.any()):
        return _kind_result(None, None, None, None, None, None)
    k, p = k[known], _finite(p[known])
    pred = (p >= threshold).long()
    viral, bacterial = k == 1, k == 0
    auc = roc_auc(k, p)
    return _kind_result(
        float((pred == k).double().mean()),
        _ratio(int((pred[viral] == 1).sum()), int(viral.sum())),
        _ratio(int((pred[bacterial] == 0).sum()), int(bacterial.sum())),
        None if auc != auc else auc,
        float(threshold),
        int(k.numel()),
    )


def _kind_result(
    accuracy: float | None,
    sensitivity: float | None,
    specificity: float | None,
    auc: float | None,
    threshold: float | None,
    n: int | None,
) -> dict[str, float | int | None]:
    """Bacterial vs viral, scored over the PNEUMONIA images whose kind is known, VIRAL positive
    (db.columns.KIND_COLUMNS store the same keys)."""
    return {
        "kind_accuracy": accuracy,
        "kind_sensitivity": sensitivity,
        "kind_specificity": specificity,
        "kind_roc_auc": auc,
        "kind_threshold": threshold,
        "kind_n": n,
    }
