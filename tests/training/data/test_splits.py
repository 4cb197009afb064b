from collections import Counter

import pytest

from training.data.data_files import LabeledImage, find_splits
from training.data.splits import patient_split


def _items() -> list[LabeledImage]:
    items = []
    for p in range(40):  # 40 NORMAL patients with 1-3 images
        items += [LabeledImage(f"n{p}_{k}", 0, f"n{p}") for k in range(1 + p % 3)]
    for p in range(100):  # 100 PNEUMONIA patients with 1-4 images
        items += [LabeledImage(f"p{p}_{k}", 1, f"p{p}") for k in range(1 + p % 4)]
    return items


def test_no_patient_on_both_sides_and_nothing_lost() -> None:
    items = _items()
    train, val = patient_split(items, 0.2, seed=3)
    assert not {i.patient for i in train} & {i.patient for i in val}
    assert sorted(i.path for i in train + val) == sorted(i.path for i in items)


def test_split_is_stratified_and_close_to_the_fraction() -> None:
    items = _items()
    _, val = patient_split(items, 0.2, seed=0)
    totals, held = Counter(i.label for i in items), Counter(i.label for i in val)
    for label in (0, 1):
        assert 0.2 <= held[label] / totals[label] < 0.2 + 4 / totals[label]


def test_same_seed_same_split_other_seed_other_split() -> None:
    items = _items()
    assert patient_split(items, 0.2, 1) == patient_split(items, 0.2, 1)
    assert patient_split(items, 0.2, 1)[1] != patient_split(items, 0.2, 2)[1]


def test_bad_fraction_is_refused() -> None:
    with pytest.raises(ValueError, match="val_fraction"):
        patient_split(_items(), 1.0)


def test_real_dataset_split_keeps_patients_apart(shared_data) -> None:
    train_items = find_splits(shared_data / "chest_xray")["train"]
    train, val = patient_split(train_items, 0.2, seed=0)
    assert not {i.patient for i in train} & {i.patient for i in val}
    assert len(train) + len(val) == len(train_items) == 5216
