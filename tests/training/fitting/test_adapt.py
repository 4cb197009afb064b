import torch

from training.fitting.adapt import choose_epochs, gain_holds


def _site(n_patients: int = 80, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    patients = torch.arange(n_patients).repeat_interleave(2)
    labels = (patients % 2).long()
    signal = torch.where(labels == 1, 1.0, -1.0)
    return labels, patients, signal + torch.randn(labels.numel(), generator=g)


def test_a_clear_gain_holds_and_noise_does_not() -> None:
    labels, patients, weak = _site()
    strong = weak + torch.where(labels == 1, 2.0, -2.0)  # the same images, better separated
    assert gain_holds(labels, weak, strong, patients)
    assert not gain_holds(labels, weak, weak + 1e-3 * torch.randn(weak.numel()), patients)


def test_choose_epochs_keeps_the_parent_unless_the_gain_holds() -> None:
    labels, patients, weak = _site()
    strong = weak + torch.where(labels == 1, 2.0, -2.0)
    oof = torch.stack([weak, weak + 0.01 * torch.randn(weak.numel()), strong])
    history = [
        {"epoch": 0, "oof_auc": 0.8},
        {"epoch": 1, "oof_auc": 0.81},
        {"epoch": 2, "oof_auc": 0.95},
    ]
    assert choose_epochs(history, labels, oof, patients) == 2
    history[2]["oof_auc"] = 0.5  # now epoch 1's tiny gain is the best on offer
    assert choose_epochs(history, labels, oof, patients) == 0
