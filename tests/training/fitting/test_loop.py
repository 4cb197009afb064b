from pathlib import Path

import pytest
import torch

from training.fitting.config import make_config
from training.fitting.errors import TrainingDiverged


def _config(**kw):
    return make_config("cnn", **{"img_size": 32, "epochs": 2, "batch_size": 8, **kw})


def test_unbalanced_training_records_the_share_it_saw(tiny_dataset: Path) -> None:
    from training.fitting.loop import train_prior

    labels = torch.tensor([0, 1, 1, 1])
    assert train_prior(_config(balance="none"), labels) == 0.75
    assert train_prior(_config(balance="weight"), labels) == 0.5


def test_the_first_non_finite_loss_stops_the_epoch(tiny_dataset: Path) -> None:
    from training.fitting.loop import train_one_epoch
    from training.fitting.training_data import DecodedSplit
    from training.models.registry import create_model

    model = create_model("cnn", img_size=32)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    data = DecodedSplit(torch.zeros((8, 3, 32, 32), dtype=torch.uint8), torch.tensor([0, 1] * 4))
    plan = (torch.arange(8), torch.zeros(8, dtype=torch.long))
    batches = []
    with pytest.raises(TrainingDiverged, match=r"loss is nan at epoch 3, batch 1; lower --lr"):
        train_one_epoch(
            model,
            data,
            plan,
            torch.optim.SGD(model.parameters(), lr=0.1),
            _config(batch_size=4),
            torch.Generator().manual_seed(0),
            lambda b, n, loss: batches.append(b),
            epoch=3,
        )
    assert batches == []  # no step was taken on a NaN loss
