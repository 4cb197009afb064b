import math

import pytest
import torch

from training.scoring.prevalence import PrevalenceError, prior_shift


def test_the_same_prevalence_changes_nothing() -> None:
    p = torch.tensor([0.01, 0.3, 0.5, 0.9])
    assert torch.allclose(prior_shift(p, 0.5, 0.5), p)


def test_a_balanced_model_at_a_lower_prevalence_follows_bayes_rule() -> None:
    # Trained 50/50, P = 0.5 means equal likelihoods; at prevalence 0.2 the posterior is 0.2.
    assert prior_shift(torch.tensor([0.5]), 0.5, 0.2).item() == pytest.approx(0.2)
    # Likelihood ratio 4 (P = 0.8 at 50/50) at prevalence 0.2: odds 4 * 0.25 = 1 -> 0.5.
    assert prior_shift(torch.tensor([0.8]), 0.5, 0.2).item() == pytest.approx(0.5)
    # From a 74% training prior to 63%: log-odds shift of logit(0.63) - logit(0.74).
    shift = math.log(0.63 / 0.37) - math.log(0.74 / 0.26)
    expected = 1 / (1 + math.exp(-(math.log(0.9 / 0.1) + shift)))
    assert prior_shift(torch.tensor([0.9]), 0.74, 0.63).item() == pytest.approx(expected)


def test_the_order_of_images_is_kept_so_auc_cannot_change() -> None:
    p = torch.rand(50, dtype=torch.float64)
    shifted = prior_shift(p, 0.5, 0.3)
    assert torch.equal(torch.argsort(p), torch.argsort(shifted))
    assert (shifted < p).all()


def test_unknown_training_prior_or_bad_prevalence_is_a_clear_error() -> None:
    with pytest.raises(PrevalenceError, match="retrain"):
        prior_shift(torch.tensor([0.5]), None, 0.3)
    with pytest.raises(PrevalenceError, match="between 0 and 1"):
        prior_shift(torch.tensor([0.5]), 0.5, 1.0)
