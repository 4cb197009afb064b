from pathlib import Path

import pytest
import torch

from tests.conftest import make_dataset
from training.fitting.config import make_config
from training.fitting.fit import fit
from training.fitting.thresholds import balanced_threshold


def test_balanced_threshold_maximises_sensitivity_plus_specificity() -> None:
    y = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1])
    p = torch.tensor([0.1, 0.2, 0.6, 0.5, 0.7, 0.8, 0.9, 0.95])
    # Cutting at 0.7 gives sens 4/5 + spec 3/3; at 0.5 gives 5/5 + 2/3 (1.67 < 1.8).
    t = balanced_threshold(y, p)
    assert 0.6 < t <= 0.7


def test_sensitivity_threshold_keeps_the_target_share_of_positives() -> None:
    from training.fitting.thresholds import sensitivity_threshold

    y = torch.tensor([1] * 20 + [0] * 5)
    prob = torch.cat([torch.linspace(0.05, 1.0, 20), torch.full((5,), 0.01)])
    for target in (0.95, 0.9, 0.75, 1.0):
        cut = sensitivity_threshold(y, prob, target)
        caught = float((prob[y == 1] >= cut).double().mean())
        assert caught >= target
        # ...and it is the highest such cut: the next positive up would lose one too many.
        higher = prob[y == 1][prob[y == 1] > cut]
        if higher.numel():
            assert float((prob[y == 1] >= higher.min()).double().mean()) < target


def test_sensitivity_threshold_rule_is_fitted_on_the_tuning_split(tmp_path: Path) -> None:
    from training.data.data_files import find_splits
    from training.fitting.split_policy import three_way_split
    from training.fitting.thresholds import sensitivity_threshold
    from training.fitting.training_data import DecodedSplit
    from training.scoring.inference import predict_proba

    root = make_dataset(tmp_path / "d", per_class=30, images_per_patient=1)
    config = make_config(
        "cnn", preset="tuned", img_size=32, epochs=2, batch_size=8, threshold="sensitivity"
    )
    result = fit(config, root)
    _, tune_items, _, _ = three_way_split(find_splits(root), config)
    tune = DecodedSplit.decode(tune_items, 32)
    prob = predict_proba(result.bundle.model, tune.images, result.bundle.normalizer)
    expected = sensitivity_threshold(tune.labels, prob, config.target_sensitivity)
    assert result.bundle.threshold == pytest.approx(expected, abs=1e-6)
