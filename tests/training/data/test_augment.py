import torch

from training.data.augment import apply_flips, balance_with_flips, random_rotate


def test_balance_adds_flipped_minority_copies_to_exactly_50_50() -> None:
    labels = torch.tensor([0] * 10 + [1] * 29)
    index, flip = balance_with_flips(labels, seed=0)
    balanced = labels[index]
    assert int((balanced == 0).sum()) == int((balanced == 1).sum()) == 29
    copies = slice(labels.numel(), None)
    assert (flip[copies] > 0).all() and (labels[index[copies]] == 0).all()
    assert (flip[: labels.numel()] == 0).all()
    # 19 copies of 10 NORMAL images: every image gets a horizontal flip, 9 a vertical too.
    assert int((flip == 1).sum()) == 10 and int((flip == 2).sum()) == 9


def test_balanced_data_is_left_alone() -> None:
    index, flip = balance_with_flips(torch.tensor([0, 1, 0, 1]), seed=0)
    assert index.tolist() == [0, 1, 2, 3] and flip.sum() == 0


def test_flip_codes() -> None:
    img = torch.arange(4).view(1, 1, 2, 2).repeat(4, 1, 1, 1)
    out = apply_flips(img, torch.tensor([0, 1, 2, 3]))
    assert out[0].flatten().tolist() == [0, 1, 2, 3]
    assert out[1].flatten().tolist() == [1, 0, 3, 2]
    assert out[2].flatten().tolist() == [2, 3, 0, 1]
    assert out[3].flatten().tolist() == [3, 2, 1, 0]


def test_rotation_is_small_and_seeded() -> None:
    x = torch.rand(8, 3, 32, 32)
    assert torch.equal(random_rotate(x, 0), x)
    a = random_rotate(x, 5, torch.Generator().manual_seed(1))
    b = random_rotate(x, 5, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == x.shape
    # A 5 degree turn moves pixels a little: the centre stays close, the image is not identical.
    assert not torch.equal(a, x)
    assert (a[:, :, 12:20, 12:20] - x[:, :, 12:20, 12:20]).abs().mean() < 0.35


def test_photometric_is_seeded_bounded_and_off_at_zero() -> None:
    from training.data.augment import random_photometric

    x = torch.rand(6, 3, 16, 16)
    assert torch.equal(random_photometric(x, 0.0, None), x)
    a = random_photometric(x, 0.3, torch.Generator().manual_seed(3))
    b = random_photometric(x, 0.3, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
    assert not torch.equal(a, x)
    # Moderate strength changes an image, it does not replace it.
    assert torch.corrcoef(torch.stack([a.flatten(), x.flatten()]))[0, 1] > 0.7


def test_balanced_sampling_draws_both_classes_evenly_from_their_own_images() -> None:
    from training.data.augment import balanced_sample

    labels = torch.tensor([0] * 30 + [1] * 270)
    picks = balanced_sample(labels, torch.Generator().manual_seed(0))
    assert picks.numel() == labels.numel()
    share = labels[picks].float().mean().item()
    assert 0.4 < share < 0.6  # 50/50 in expectation, where the data is 90/10
    assert set(picks[labels[picks] == 0].tolist()) <= set(range(30))
