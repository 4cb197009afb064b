"""Two-sample tests for drift alarms, pure numpy: Fisher's exact test of two shares, the
two-sample Kolmogorov-Smirnov statistic with its exact p-value, and Holm's step-down
adjustment over several tests.

    p = fisher_exact(12, 200, 2, 150)
    p = ks_pvalue(ks_statistic(batch, reference), len(batch), len(reference))
    adjusted = holm([p1, p2, p3])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

EXACT_KS_CELLS = 10_000_000  # n*m up to which the KS p-value is exact (about 0.1 s at most)


def fisher_exact(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided p-value of Fisher's exact test that k1 of n1 and k2 of n2 share one rate:
    the probability, given the margins, of every table no more likely than the one seen."""
    total, hits = n1 + n2, k1 + k2
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, total + 1)))])
    x = np.arange(max(0, hits - n2), min(hits, n1) + 1)

    def log_choose(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
        return log_fact[a] - log_fact[b] - log_fact[np.subtract(a, b)]

    log_p = log_choose(hits, x) + log_choose(total - hits, n1 - x) - log_choose(total, n1)
    seen = log_p[x == k1][0]
    return float(min(1.0, np.exp(log_p[log_p <= seen + 1e-7]).sum()))


def ks_statistic(x: np.ndarray, y: np.ndarray) -> int:
    """D * n * m (an integer): the largest gap between the two empirical CDFs, at every
    distinct value (ties are taken whole)."""
    x, y = np.sort(x), np.sort(y)
    values = np.concatenate([x, y])
    a = np.searchsorted(x, values, side="right").astype(np.int64)
    b = np.searchsorted(y, values, side="right").astype(np.int64)
    return int(np.abs(a * y.size - b * x.size).max())


def ks_pvalue(d_nm: int, n: int, m: int) -> float:
    """P(D * n * m >= d_nm) for samples of n and m from one continuous distribution (with ties
    the true p-value is smaller: this one is conservative)."""
    if d_nm <= 0:
        return 1.0
    if n * m > EXACT_KS_CELLS:
        return _ks_asymptotic(d_nm / (n * m), n, m)
    # w[i] on diagonal k: the share of lattice paths from (0, 0) to (i, k - i) that keep
    # |i*m - j*n| < d_nm, each step weighted so values stay in [0, 1] (no binomial overflow).
    i = np.arange(n + 1)
    w = np.zeros(n + 1)
    w[0] = 1.0
    for k in range(1, n + m + 1):
        j = k - i
        inside = (j >= 0) & (j <= m) & (np.abs(i * m - j * n) < d_nm)
        step = np.zeros(n + 1)
        step[1:] = w[:-1] * i[1:] / k  # from (i - 1, j)
        step += w * j.clip(0) / k  # from (i, j - 1)
        w = np.where(inside, step, 0.0)
    return float(min(1.0, max(0.0, 1.0 - w[n])))


def _ks_asymptotic(d: float, n: int, m: int) -> float:
    """Kolmogorov's limit with Stephens' correction for finite samples."""
    en = math.sqrt(n * m / (n + m))
    lam = (en + 0.12 + 0.11 / en) * d
    terms = [(-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101)]
    return float(min(1.0, max(0.0, 2 * sum(terms))))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values: a statistic alarms when its adjusted p <= alpha,
    which keeps the chance of any false alarm among all of them at alpha."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted = [1.0] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted
