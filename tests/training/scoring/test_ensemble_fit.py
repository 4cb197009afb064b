import torch

from training.evaluation.metrics import roc_auc
from training.scoring.ensemble_fit import cross_fitted, fit_stack, group_folds, select_members


def _members(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Members 0 and 1 each know the label with independent errors; member 2 is noise."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, generator=g) < 0.7).long()
    sign = (y * 2 - 1).double()
    good = [torch.sigmoid(sign * 1.5 + torch.randn(n, generator=g, dtype=torch.float64))]
    good.append(torch.sigmoid(sign * 1.5 + torch.randn(n, generator=g, dtype=torch.float64)))
    noise = torch.rand(n, generator=g, dtype=torch.float64) * 0.98 + 0.01
    return torch.stack([*good, noise]), y


def test_folds_keep_each_patient_in_one_fold() -> None:
    groups = [f"p{i // 3}" for i in range(30)]
    folds = group_folds(groups, 5, seed=1)
    assert torch.stack(folds).sum(0).tolist() == [1] * 30
    for fold in folds:
        inside = {g for g, m in zip(groups, fold.tolist(), strict=True) if m}
        outside = {g for g, m in zip(groups, fold.tolist(), strict=True) if not m}
        assert not inside & outside


def test_cross_fitted_predicts_every_sample_out_of_fold() -> None:
    probs, y = _members(300)
    groups = [str(i) for i in range(300)]
    oof_prob, oof_label, fits = cross_fitted(probs, y, groups, k=5)
    assert oof_prob.shape == (300,) and not torch.isnan(oof_prob).any()
    assert ((oof_label == y).double().mean()) > 0.8
    assert len(fits) == 5 and all(f.members == [0, 1, 2] for f in fits)


def test_cross_fitted_scores_do_not_see_their_own_fold() -> None:
    # Labels that are pure noise: a fit scored on what it was fitted to would look better than
    # chance; out-of-fold scores must not.
    g = torch.Generator().manual_seed(3)
    probs = torch.rand(30, 120, generator=g, dtype=torch.float64) * 0.98 + 0.01
    y = (torch.rand(120, generator=g) < 0.5).long()
    groups = [str(i) for i in range(120)]
    in_sample = fit_stack(probs, y, groups)
    oof_prob, _, _ = cross_fitted(probs, y, groups, k=5)
    assert roc_auc(y, in_sample.predict(probs)) > 0.6
    assert roc_auc(y, oof_prob) < 0.6


def test_selection_keeps_members_that_add_and_drops_a_copy() -> None:
    probs, y = _members(600)
    probs = torch.cat([probs[:2], probs[:1]])  # member 2 is member 0 again: it adds nothing
    groups = [str(i // 2) for i in range(600)]
    assert select_members(probs, y, groups, k=5) == [0, 1]
    fit = fit_stack(probs, y, groups, select=True)
    assert fit.members == [0, 1] and len(fit.weights) == 2
    assert fit.predict(probs).shape == (600,)


def test_selection_is_redone_inside_each_fold() -> None:
    probs, y = _members(400, seed=1)
    groups = [str(i) for i in range(400)]
    _, _, fits = cross_fitted(probs, y, groups, k=4, select=True)
    assert len(fits) == 4 and all(set(f.members) <= {0, 1, 2} and f.members for f in fits)
    assert all(0 in f.members and 1 in f.members for f in fits)


def test_selection_of_one_member_stops_there() -> None:
    probs, y = _members(200)
    assert select_members(probs[:1], y, [str(i) for i in range(200)]) == [0]
