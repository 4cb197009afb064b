"""The decoded images a training run learns and chooses from: each split decoded once, at the
size, contrast mapping and crop the model will be served with.

from training.fitting.training_data import load_data
data = load_data(config, "../shared/data/chest_xray")
data.train.images  # (N, 3, S, S) uint8; data.train.labels, data.train.kinds (N,)
data.tune  # None without a tuning split; data.info: fingerprint, counts, how val was chosen
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from training.data.data_files import LabeledImage, find_splits, fingerprint, kind_code
from training.data.preprocess import decode_many
from training.fitting.config import TrainConfig
from training.fitting.split_policy import three_way_split


@dataclass
class DecodedSplit:
    """Decoded uint8 images, labels and pneumonia kinds of one split (undecodable files
    dropped). kinds: 0 bacterial, 1 viral, -1 NORMAL or a PNEUMONIA of unknown kind."""

    images: torch.Tensor
    labels: torch.Tensor
    dropped: list[str] = field(default_factory=list)
    kinds: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.kinds is None:
            self.kinds = torch.full_like(self.labels, -1)

    def to(self, device: torch.device) -> DecodedSplit:
        """The same split with its tensors on `device` (itself when they are there already)."""
        if self.images.device == device:
            return self
        images, labels, kinds = (t.to(device) for t in (self.images, self.labels, self.kinds))
        return DecodedSplit(images, labels, self.dropped, kinds)

    @classmethod
    def decode(
        cls, items: list[LabeledImage], size: int, equalize: str = "none", crop: float = 1.0
    ) -> DecodedSplit:
        decoded = decode_many([i.path for i in items], size, equalize_mode=equalize, crop=crop)
        kept = [items[i] for i in decoded.ok_index]
        labels = torch.tensor([i.label for i in kept], dtype=torch.long)
        kinds = torch.tensor([kind_code(i.path, i.label) for i in kept], dtype=torch.long)
        dropped = [f"{items[i].path}: {msg}" for i, msg in decoded.errors.items()]
        return cls(decoded.tensor, labels, dropped, kinds)


@dataclass
class TrainingData:
    """A run's decoded train, validation and tuning splits; test/ stays undecoded until the
    model is scored on it."""

    train: DecodedSplit
    val: DecodedSplit
    tune: DecodedSplit | None
    info: dict[str, Any]
    test_items: list[LabeledImage]


def decode_split(items: list[LabeledImage], config: TrainConfig) -> DecodedSplit:
    """Decode at the config's size, contrast mapping and crop: what the bundle serves with."""
    return DecodedSplit.decode(items, config.img_size, config.equalize, config.crop)


def load_data(config: TrainConfig, data_root: str | Path) -> TrainingData:
    """Decode train / tune / validation once; the tuning split comes out of train, by patient."""
    splits = find_splits(data_root)
    train_items, tune_items, val_items, how = three_way_split(splits, config)
    train, val = (decode_split(x, config) for x in (train_items, val_items))
    tune = decode_split(tune_items, config) if tune_items else None
    info = {
        "root": str(Path(data_root).resolve()),
        "fingerprint": fingerprint(train_items + tune_items + val_items),
        "validation": how,
        "n_train": int(train.labels.numel()),
        "n_tune": len(tune_items),
        "n_val": int(val.labels.numel()),
        "dropped": train.dropped + val.dropped + (tune.dropped if tune else []),
    }
    return TrainingData(train, val, tune, info, splits.get("test", []))
