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


def _epoch(read_each_batch: bool, nan_at: int | None = None) -> tuple[float, list]:
    """One seeded epoch of a tiny CNN on fixed data; (mean loss, what on_batch was told)."""
    from training.fitting.loop import train_one_epoch
    from training.fitting.training_data import DecodedSplit
    from training.models.registry import create_model

    torch.manual_seed(0)
    model = create_model("cnn", img_size=32, kind_head="two")
    images = torch.randint(0, 256, (16, 3, 32, 32), generator=torch.Generator().manual_seed(1))
    data = DecodedSplit(
        images.to(torch.uint8), torch.tensor([0, 1] * 8), kinds=torch.tensor([-1, 0, -1, 1] * 4)
    )
    plan = (torch.arange(16), torch.tensor([0, 1, 2, 3] * 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    if nan_at is not None:  # the loss turns NaN from batch nan_at on (1-based)
        seen = {"n": 0}

        def poison(_module, _args, out):
            seen["n"] += 1
            return out * float("nan") if seen["n"] >= nan_at else out

        model.register_forward_hook(poison)
    told: list = []
    loss = train_one_epoch(
        model,
        data,
        plan,
        optimizer,
        _config(batch_size=4, rotation_degrees=5.0),
        torch.Generator().manual_seed(0),
        lambda b, n, value: told.append((b, value)),
        epoch=2,
        read_each_batch=read_each_batch,
    )
    return loss, told


def test_an_epoch_read_once_at_its_end_trains_the_same_as_one_read_each_batch() -> None:
    """What a GPU epoch does (losses kept on the device, one read at the end), run here."""
    eager, told_eager = _epoch(read_each_batch=True)
    deferred, told_deferred = _epoch(read_each_batch=False)
    assert deferred == pytest.approx(eager, rel=1e-6)
    assert [b for b, _ in told_deferred] == [1, 2, 3, 4]
    assert all(v is None for _, v in told_deferred)  # no per-batch read of the device
    assert eager == pytest.approx(sum(v for _, v in told_eager) / 4, rel=1e-6)


def test_an_epoch_read_at_its_end_still_names_the_first_batch_that_diverged() -> None:
    with pytest.raises(TrainingDiverged, match=r"loss is nan at epoch 2, batch 3; lower --lr"):
        _epoch(read_each_batch=False, nan_at=3)
