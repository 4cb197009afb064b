import math

import pytest
import torch

from training.evaluation.metrics import binary_scores, paired_auc_bootstrap, roc_auc


def test_scores_match_a_hand_computed_confusion_matrix() -> None:
    # labels:      1    1    1    1    0    0    0    1    0    0
    # probs >= .5: P    P    P    N    P    N    N    P    N    N   -> TP 4, FN 1, FP 1, TN 4
    y = [1, 1, 1, 1, 0, 0, 0, 1, 0, 0]
    p = [0.9, 0.8, 0.7, 0.4, 0.6, 0.3, 0.2, 0.55, 0.1, 0.45]
    s = binary_scores(y, p, 0.5)
    assert (s["tp"], s["fp"], s["tn"], s["fn"], s["n"]) == (4, 1, 4, 1, 10)
    assert s["precision"] == pytest.approx(4 / 5)
    assert s["sensitivity"] == pytest.approx(4 / 5)
    assert s["specificity"] == pytest.approx(4 / 5)
    assert s["accuracy"] == pytest.approx(8 / 10)
    assert s["f1"] == pytest.approx(2 * 4 / (2 * 4 + 1 + 1))
    # AUC by counting: of 25 (pos, neg) pairs, the positive ranks higher in all but
    # (0.4 vs 0.6), (0.4 vs 0.45) and (0.55 vs 0.6): 22/25.
    assert s["roc_auc"] == pytest.approx(22 / 25)


def test_threshold_moves_the_confusion_matrix() -> None:
    s = binary_scores([1, 0, 1, 0], [0.7, 0.6, 0.3, 0.1], threshold=0.65)
    assert (s["tp"], s["fp"], s["tn"], s["fn"]) == (1, 0, 2, 1)
    assert s["threshold"] == 0.65


def test_auc_counts_ties_as_half() -> None:
    assert roc_auc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
    assert roc_auc([1, 1, 0, 0], [0.8, 0.5, 0.5, 0.2]) == pytest.approx((1 + 1 + 0.5 + 1) / 4)


def test_degenerate_inputs_do_not_divide_by_zero() -> None:
    s = binary_scores([1, 1, 1], [0.1, 0.2, 0.3])
    assert (s["precision"], s["f1"], s["specificity"]) == (0.0, 0.0, 0.0)
    assert math.isnan(s["roc_auc"])
    with pytest.raises(ValueError, match="3 labels but 2"):
        binary_scores([1, 0, 1], [0.1, 0.2])


def test_paired_bootstrap_brackets_a_real_difference_and_an_equal_one() -> None:
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(400, generator=g) < 0.6).long()
    sign = (y * 2 - 1).double()
    sharp = torch.sigmoid(sign * 2 + torch.randn(400, generator=g, dtype=torch.float64))
    blunt = torch.sigmoid(sign * 0.5 + torch.randn(400, generator=g, dtype=torch.float64))
    groups = [str(i // 2) for i in range(400)]
    better = paired_auc_bootstrap(y, sharp, blunt, groups, n_boot=300)
    assert better["low"] > 0 and better["p_a_at_least_b"] == 1.0
    assert better["diff"] == pytest.approx(roc_auc(y, sharp) - roc_auc(y, blunt))
    same = paired_auc_bootstrap(y, sharp, sharp * 0.5, groups, n_boot=50)  # same ranking
    assert same["diff"] == 0 and same["low"] == same["high"] == 0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_probabilities_are_refused_not_scored(bad: float) -> None:
    # NaN ranks tied with everything: before this check a diverged model scored AUC 1.0.
    y, p = [1, 0, 1, 0], [bad, bad, bad, bad]
    with pytest.raises(ValueError, match="4 of 4 probabilities are not finite"):
        roc_auc(y, p)
    with pytest.raises(ValueError, match="not finite"):
        binary_scores(y, [0.9, 0.1, bad, 0.2])
