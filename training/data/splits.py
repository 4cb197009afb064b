"""Patient-level, class-stratified splits, and the policy that turns a dataset's folders into
the training, tuning and validation parts of a run.

from training.data.splits import patient_split, three_way_split
train, val = patient_split(items, val_fraction=0.2, seed=0)
train, tune, val, how = three_way_split(find_splits(root), config)

Every image of a patient lands on the same side, so a validation score never rewards a model for
recognising a child it has already seen. Within each class, patients are shuffled with the seed and
taken into validation until that class's share of images reaches `val_fraction`.
"""

from __future__ import annotations

import random
from collections import defaultdict

from training.data.data_files import LabeledImage
from training.fitting.config import TrainConfig
from training.fitting.errors import TrainingDataError

# A val/ folder is used as given only when it can measure both classes; the official
# Kaggle val/ holds 16 images, too few, so a patient split of train/ is used instead.
MIN_VAL_PER_CLASS = 50


def patient_split(
    items: list[LabeledImage], val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[LabeledImage], list[LabeledImage]]:
    """Return (train, val); the same items and seed always give the same split."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    by_patient: dict[str, list[LabeledImage]] = defaultdict(list)
    for item in items:
        by_patient[item.patient].append(item)
    # A patient is stratified by their most common label (ties go to PNEUMONIA).
    patients_by_class: dict[int, list[str]] = defaultdict(list)
    for patient, images in by_patient.items():
        positives = sum(i.label for i in images)
        patients_by_class[int(positives * 2 >= len(images))].append(patient)

    rng = random.Random(seed)
    val_patients: set[str] = set()
    for label in sorted(patients_by_class):
        patients = sorted(patients_by_class[label])
        rng.shuffle(patients)
        target = val_fraction * sum(len(by_patient[p]) for p in patients)
        taken = 0
        for patient in patients:
            if taken >= target:
                break
            val_patients.add(patient)
            taken += len(by_patient[patient])
    train = [i for i in items if i.patient not in val_patients]
    val = [i for i in items if i.patient in val_patients]
    return train, val


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
