"""Patient-level, class-stratified splits (training.fitting.split_policy decides which a run
takes).

from training.data.splits import patient_split
train, val = patient_split(items, val_fraction=0.2, seed=0)

Every image of a patient lands on the same side, so a validation score never rewards a model for
recognising a child it has already seen. Within each class, patients are shuffled with the seed and
taken into validation until that class's share of images reaches `val_fraction`.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from training.data.data_files import CLASSES, LabeledImage, find_splits


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


def linked_halves(data: Path, root: Path, seed: int) -> tuple[Path, Path]:
    """Two folders under root (half-a, half-b) of links to the labelled images below `data`,
    split by patient and stratified by class: one labelled set playing two sites, or a site
    and its next patients (the calibration and drift benchmarks)."""
    items = [i for split in find_splits(data.parent).values() for i in split]
    items = [i for i in items if Path(i.path).resolve().is_relative_to(data.resolve())]
    a, b = patient_split(items, val_fraction=0.5, seed=seed)
    for name, half in (("half-a", a), ("half-b", b)):
        for item in half:
            link = root / name / CLASSES[item.label] / Path(item.path).name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(Path(item.path).resolve())
    return root / "half-a", root / "half-b"
