"""ROC, precision-recall and reliability points from labels and probabilities, in plain Python:
training stores ROC points with each model, and the CLI draws pages without importing torch."""

from __future__ import annotations

from collections.abc import Sequence

MAX_POINTS = 200  # a curve keeps at most this many points: enough to draw, small to embed


def _thin(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(points) <= MAX_POINTS:
        return points
    step = (len(points) - 1) / (MAX_POINTS - 1)
    return [points[round(i * step)] for i in range(MAX_POINTS)]


def _sweep(y: Sequence[int], p: Sequence[float]) -> list[tuple[int, int]]:
    """(true positives, false positives) above each distinct score, highest score first."""
    order = sorted(range(len(p)), key=lambda i: -p[i])
    tp = fp = 0
    out = []
    for rank, i in enumerate(order):
        tp, fp = tp + y[i], fp + (1 - y[i])
        if rank + 1 == len(order) or p[order[rank + 1]] != p[i]:
            out.append((tp, fp))
    return out


def roc_points(y: Sequence[int], p: Sequence[float]) -> list[tuple[float, float]]:
    """(false positive rate, true positive rate) from (0, 0) to (1, 1); [] with one class."""
    pos, neg = sum(y), len(y) - sum(y)
    if not pos or not neg:
        return []
    return _thin([(0.0, 0.0)] + [(fp / neg, tp / pos) for tp, fp in _sweep(y, p)])


def pr_points(y: Sequence[int], p: Sequence[float]) -> list[tuple[float, float]]:
    """(recall, precision) at each distinct score, PNEUMONIA positive; [] without positives."""
    pos = sum(y)
    if not pos:
        return []
    return _thin([(tp / pos, tp / (tp + fp)) for tp, fp in _sweep(y, p)])


def reliability(
    y: Sequence[int], p: Sequence[float], bins: int = 10
) -> list[tuple[float, float, int]]:
    """(mean P, share PNEUMONIA, images) of each non-empty tenth of P."""
    groups: list[list[int]] = [[] for _ in range(bins)]
    for i, value in enumerate(p):
        groups[min(int(value * bins), bins - 1)].append(i)
    return [
        (sum(p[i] for i in g) / len(g), sum(y[i] for i in g) / len(g), len(g)) for g in groups if g
    ]
