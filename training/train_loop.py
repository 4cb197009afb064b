"""Train one model from a TrainConfig and a dataset folder; evaluate it on validation (and test).

from training.config import make_config
from training.train_loop import fit
result = fit(make_config("googlenet", epochs=3), "../shared/data/chest_xray")
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.augment import apply_flips, balance_with_flips, random_rotate
from training.checkpoint import ModelBundle
from training.config import TrainConfig
from training.data_files import LabeledImage, find_splits, fingerprint
from training.inference import predict_proba
from training.metrics import binary_scores
from training.models import create_model
from training.preprocess import Normalizer, decode_many
from training.splits import patient_split

# A val/ folder is used as given only when it can measure both classes; the official
# Kaggle val/ holds 16 images, too few, so a patient split of train/ is used instead.
MIN_VAL_PER_CLASS = 50

ProgressFn = Callable[[int, int, str], None]  # (done, total, message)
CancelFn = Callable[[], bool]


class TrainingCancelled(Exception):
    pass


class TrainingDataError(ValueError):
    pass


@dataclass
class Tensors:
    """Decoded uint8 images and labels of one split (undecodable files dropped)."""

    images: torch.Tensor
    labels: torch.Tensor
    dropped: list[str] = field(default_factory=list)

    @classmethod
    def decode(cls, items: list[LabeledImage], size: int) -> Tensors:
        decoded = decode_many([i.path for i in items], size)
        labels = torch.tensor([items[i].label for i in decoded.ok_index], dtype=torch.long)
        dropped = [f"{items[i].path}: {msg}" for i, msg in decoded.errors.items()]
        return cls(decoded.tensor, labels, dropped)


@dataclass
class TrainResult:
    bundle: ModelBundle
    val_scores: dict[str, Any]
    test_scores: dict[str, Any] | None
    history: list[dict[str, Any]]
    data: dict[str, Any]  # fingerprint, counts and how validation was chosen
    seconds: float


def _cap(items: list[LabeledImage], per_class: int, seed: int) -> list[LabeledImage]:
    if per_class <= 0:
        return items
    rng = random.Random(seed)
    kept: list[LabeledImage] = []
    for label in (0, 1):
        members = [i for i in items if i.label == label]
        kept += sorted(rng.sample(members, min(per_class, len(members))), key=lambda i: i.path)
    return kept


def choose_validation(
    splits: dict[str, list[LabeledImage]], config: TrainConfig
) -> tuple[list[LabeledImage], list[LabeledImage], str]:
    """(train, val, how) — the val/ folder when big enough, else a patient split of train."""
    train = _cap(splits["train"], config.max_images_per_class, config.seed)
    val = splits.get("val", [])
    if all(sum(i.label == c for i in val) >= MIN_VAL_PER_CLASS for c in (0, 1)):
        return train, val, "val folder"
    train, val = patient_split(train, config.val_fraction, config.seed)
    for name, part in (("training", train), ("validation", val)):
        if {i.label for i in part} != {0, 1}:
            raise TrainingDataError(
                f"the {name} part has only one class; add images of both classes"
            )
    how = f"patient split of train, fraction {config.val_fraction}, seed {config.seed}"
    return train, val, how


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def train_one_epoch(
    model: nn.Module,
    data: Tensors,
    plan: tuple[torch.Tensor, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    gen: torch.Generator,
    on_batch: Callable[[int, int, float], None],
) -> float:
    """One pass over the (balanced) plan in a seeded order; returns the mean loss."""
    model.train()
    device = next(model.parameters()).device
    normalizer = Normalizer()
    loss_fn = nn.BCEWithLogitsLoss()
    index, flip = plan
    order = torch.randperm(index.numel(), generator=gen)
    n_batches = (order.numel() + config.batch_size - 1) // config.batch_size
    total = 0.0
    for b in range(n_batches):
        pick = order[b * config.batch_size : (b + 1) * config.batch_size]
        images = apply_flips(data.images[index[pick]], flip[pick]).float().div_(255.0)
        images = normalizer.from_unit(random_rotate(images, config.rotation_degrees, gen))
        target = data.labels[index[pick]].float().to(device)
        loss = loss_fn(model(images.to(device)), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item()
        on_batch(b + 1, n_batches, loss.item())
    return total / max(n_batches, 1)


def _evaluate(model: nn.Module, data: Tensors, threshold: float) -> dict[str, Any]:
    prob = predict_proba(model, data.images, Normalizer())
    return binary_scores(data.labels, prob, threshold)


def fit(
    config: TrainConfig,
    data_root: str | Path,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
) -> TrainResult:
    """Train `config.arch` on data_root's train split; score validation (and test/ if present)."""
    started = time.perf_counter()
    gen = seed_everything(config.seed)
    splits = find_splits(data_root)
    train_items, val_items, how = choose_validation(splits, config)
    train, val = (Tensors.decode(x, config.img_size) for x in (train_items, val_items))
    plan = (
        balance_with_flips(train.labels, config.seed)
        if config.balance == "flip"
        else (torch.arange(train.labels.numel()), torch.zeros_like(train.labels))
    )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = create_model(config.arch, config.img_size, config.pretrained).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    batches = (plan[0].numel() + config.batch_size - 1) // config.batch_size
    history: list[dict[str, Any]] = []
    report = progress or (lambda done, total, msg: None)
    for epoch in range(config.epochs):
        if should_cancel and should_cancel():
            raise TrainingCancelled(f"cancelled before epoch {epoch + 1}")

        def on_batch(b: int, n: int, loss: float, epoch: int = epoch) -> None:
            label = f"epoch {epoch + 1}/{config.epochs} loss {loss:.3f}"
            report(epoch * batches + b, config.epochs * batches, label)

        loss = train_one_epoch(model, train, plan, optimizer, config, gen, on_batch)
        scores = _evaluate(model, val, config.threshold)
        history.append({"epoch": epoch + 1, "loss": loss, **scores})
        label = f"epoch {epoch + 1}/{config.epochs} loss {loss:.3f} val f1 {scores['f1']:.3f}"
        report((epoch + 1) * batches, config.epochs * batches, label)
    model = model.cpu().eval()
    bundle = ModelBundle(
        model, config.arch, config.img_size, Normalizer(), config.threshold, config.to_dict()
    )
    val_scores = _evaluate(model, val, config.threshold)
    test_scores = None
    if splits.get("test"):
        test = Tensors.decode(splits["test"], config.img_size)
        test_scores = _evaluate(model, test, config.threshold)
    data = {
        "root": str(Path(data_root).resolve()),
        "fingerprint": fingerprint(train_items + val_items),
        "validation": how,
        "n_train": int(train.labels.numel()),
        "n_train_balanced": int(plan[0].numel()),
        "n_val": int(val.labels.numel()),
        "dropped": train.dropped + val.dropped,
    }
    seconds = time.perf_counter() - started
    return TrainResult(bundle, val_scores, test_scores, history, data, seconds)
