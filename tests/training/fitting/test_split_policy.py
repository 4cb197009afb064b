"""The split policy: training, tuning and validation parts of a run, by patient."""

from pathlib import Path

from training.data.data_files import find_splits
from training.fitting.config import make_config
from training.fitting.split_policy import choose_validation, three_way_split


def test_train_tune_and_validation_share_no_patient(shared_data: Path) -> None:
    splits = find_splits(shared_data / "chest_xray")
    train, tune, val, _ = three_way_split(splits, make_config("cnn", preset="tuned"))
    assert len(tune) > 400
    parts = [{i.patient for i in part} for part in (train, tune, val)]
    assert not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]
    assert sum(len(p) for p in (train, tune, val)) == 5216
    # The seed preset's validation split is the same images: presets compare on equal terms.
    _, seed_val, _ = choose_validation(splits, make_config("cnn"))
    assert {i.path for i in seed_val} == {i.path for i in val}
