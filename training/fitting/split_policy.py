"""The policy that turns a dataset's folders into the training, tuning and validation parts of a
run: the val/ folder when it can measure both classes, else a patient split of train/, and a
tuning split out of train, by patient.

from training.fitting.split_policy import three_way_split
train, tune, val, how = three_way_split(find_splits(root), config)
"""

from __future__ import annotations

import random

from training.data.data_files import LabeledImage
from training.data.splits import patient_split
from training.fitting.config import TrainConfig
from training.fitting.errors import TrainingDataError

# A val/ folder is used as given only when it can measure both classes; the official
# Kaggle val/ holds 16 images, too few, so a patient split of train/ is used instead.
MIN_VAL_PER_CLASS = 50


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


def three_way_split(
    splits: dict[str, list[LabeledImage]], config: TrainConfig
) -> tuple[list[LabeledImage], list[LabeledImage], list[LabeledImage], str]:
    """(train, tune, val, how): validation first, then a tuning split out of train, by patient."""
    train, val, how = choose_validation(splits, config)
    tune: list[LabeledImage] = []
    if config.tune_fraction > 0:
        train, tune = patient_split(train, config.tune_fraction, config.seed + 1)
    return train, tune, val, how
