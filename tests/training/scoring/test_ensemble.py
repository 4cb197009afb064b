"""Combining an ensemble's members (training.scoring.ensemble): the weighted vote, stacking,
P(viral) and the kind threshold."""

import pytest
import torch

from training.scoring.ensemble import (
    combine,
    combine_viral,
    ensemble_kind_threshold,
    fit_stacking,
    stack,
    weighted_vote,
)

SEED = [0.5, 0.5, 0.5, 0.51]  # mlp, cnn, resnet50, googlenet


def test_seed_vote_lets_googlenet_break_a_tie() -> None:
    # columns: 2-2 with GoogLeNet for; 2-2 with GoogLeNet against; three against GoogLeNet.
    probs = torch.tensor([[0.9, 0.9, 0.9], [0.1, 0.1, 0.9], [0.1, 0.9, 0.9], [0.9, 0.1, 0.1]])
    share = weighted_vote(probs, SEED, [0.5] * 4)
    assert share.tolist() == pytest.approx([1.01 / 2.01, 1.0 / 2.01, 1.5 / 2.01])
    assert (share > 0.5).tolist() == [True, False, True]


def test_votes_use_each_members_threshold() -> None:
    probs = torch.tensor([[0.3], [0.3]])
    assert weighted_vote(probs, [1, 1], [0.2, 0.5]).item() == pytest.approx(0.5)


def test_stack_is_a_logistic_regression_on_logits() -> None:
    probs = torch.tensor([[0.8], [0.3]], dtype=torch.float64)
    logit = torch.log(probs / (1 - probs))
    expected = torch.sigmoid(2.0 * logit[0] - 1.0 * logit[1] + 0.25)
    assert stack(probs, [2.0, -1.0], 0.25).item() == pytest.approx(expected.item())
    assert combine("stacking", probs, [2.0, -1.0], [0.5, 0.5], 0.25).item() == pytest.approx(
        expected.item()
    )
    with pytest.raises(ValueError, match="unknown ensemble method"):
        combine("median", probs, [1, 1], [0.5, 0.5])


def _members(n: int = 400, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Member 0 knows the label, member 1 is noise."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, generator=g) < 0.7).long()
    good = torch.sigmoid((y * 2 - 1) * 2.0 + torch.randn(n, generator=g))
    noise = torch.rand(n, generator=g) * 0.98 + 0.01
    return torch.stack([good, noise]).double(), y


def test_stacking_weighs_the_informative_member() -> None:
    probs, y = _members()
    (w_good, w_noise), _ = fit_stacking(probs, y)
    assert w_good > 0.5 and abs(w_noise) < 0.3 * w_good


def test_combine_viral_weighs_members_that_answer_it() -> None:
    viral = torch.tensor([[0.8, 0.2], [0.4, float("nan")]], dtype=torch.float64)
    combined = combine_viral(viral, [3.0, 1.0])
    assert combined.tolist() == pytest.approx([(3 * 0.8 + 0.4) / 4, 0.2])
    assert combine_viral(viral, [-1.0, 1.0])[0] == pytest.approx(0.4)  # negative weight: 0
    # where the only member that answers weighs 0, its answer stands
    assert combine_viral(viral, [1.0, -1.0]).tolist() == pytest.approx([0.8, 0.2])
    assert combine_viral(viral, [0.0, 1.0])[1] == pytest.approx(0.2)
    assert torch.isnan(combine_viral(torch.full((2, 1), float("nan")), [1.0, 1.0])).all()
    assert ensemble_kind_threshold([0.3, None], [1.0, 5.0]) == pytest.approx(0.3)
    assert ensemble_kind_threshold([None, None], [1.0, 1.0]) == 0.5
