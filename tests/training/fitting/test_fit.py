from pathlib import Path

import pytest
import torch

from tests.conftest import make_dataset, make_xray
from training.fitting.config import make_config
from training.fitting.errors import TrainingCancelled, TrainingDataError, TrainingDiverged
from training.fitting.fit import fit


def _config(**kw):
    return make_config("cnn", **{"img_size": 32, "epochs": 2, "batch_size": 8, **kw})


def test_fit_reports_every_score_and_how_validation_was_chosen(tiny_dataset: Path) -> None:
    seen = []
    result = fit(_config(), tiny_dataset, progress=lambda d, t, m: seen.append((d, t, m)))
    assert {"f1", "roc_auc", "tp", "fn", "n"} <= set(result.val_scores)
    assert result.val_scores["n"] == result.data["n_val"] > 0
    assert result.data["validation"].startswith("patient split")
    assert result.data["n_train_balanced"] >= result.data["n_train"]
    assert len(result.history) == 2 and result.test_scores is None
    assert seen[-1][0] == seen[-1][1] and "val AUC" in seen[-1][2]


def test_same_seed_gives_the_same_model(tiny_dataset: Path) -> None:
    a, b = fit(_config(seed=5), tiny_dataset), fit(_config(seed=5), tiny_dataset)
    assert a.val_scores == b.val_scores
    for (name, p), q in zip(
        a.bundle.model.state_dict().items(), b.bundle.model.state_dict().values(), strict=True
    ):
        assert torch.equal(p, q), name


def test_init_seed_changes_the_run_but_not_the_split(tiny_dataset: Path) -> None:
    a = fit(_config(seed=5, epochs=1), tiny_dataset)
    b = fit(_config(seed=5, epochs=1, init_seed=6), tiny_dataset)
    assert a.data["fingerprint"] == b.data["fingerprint"] and a.data["n_val"] == b.data["n_val"]
    assert a.data["validation"] == b.data["validation"]
    first = next(iter(a.bundle.model.state_dict().values()))
    assert not torch.equal(first, next(iter(b.bundle.model.state_dict().values())))
    assert make_config("cnn", seed=5).run_seed == 5 and _config(init_seed=6).run_seed == 6


def test_a_test_folder_is_scored_too(tiny_dataset: Path) -> None:
    make_xray(tiny_dataset / "test" / "NORMAL" / "IM-0900-0001.jpeg", False, 7)
    make_xray(tiny_dataset / "test" / "PNEUMONIA" / "person900_virus_1.jpeg", True, 8)
    result = fit(_config(epochs=1), tiny_dataset)
    assert result.test_scores is not None and result.test_scores["n"] == 2


def test_unreadable_training_files_are_dropped_and_named(tiny_dataset: Path) -> None:
    (tiny_dataset / "train" / "NORMAL" / "IM-0800-0001.jpeg").write_bytes(b"garbage")
    result = fit(_config(epochs=1), tiny_dataset)
    assert any("IM-0800-0001.jpeg" in d for d in result.data["dropped"])


def test_cancel_stops_between_epochs(tiny_dataset: Path) -> None:
    with pytest.raises(TrainingCancelled):
        fit(_config(), tiny_dataset, should_cancel=lambda: True)


def test_too_few_patients_for_both_classes_in_validation(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "d", per_class=2, images_per_patient=2)
    with pytest.raises(TrainingDataError, match="only one class"):
        fit(_config(), root)


def test_tuned_preset_picks_epoch_and_threshold_on_the_tuning_split(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "d", per_class=30, images_per_patient=1)
    config = make_config("cnn", preset="tuned", img_size=32, epochs=3, batch_size=8)
    result = fit(config, root)
    assert result.data["n_tune"] > 0 and result.data["n_train_balanced"] == result.data["n_train"]
    assert all("tune_auc" in h for h in result.history)
    best = max(result.history, key=lambda h: h["tune_auc"])
    assert result.data["best_epoch"] == best["epoch"]
    assert 0.0 < result.bundle.threshold < 1.0 and result.val_scores["threshold"] == (
        result.bundle.threshold
    )


def test_new_recipe_options_train_and_travel_with_the_model(tiny_dataset: Path) -> None:
    config = _config(
        epochs=1, equalize="clahe", photometric=0.3, label_smoothing=0.1, balance="sample"
    )
    result = fit(config, tiny_dataset)
    assert result.bundle.equalize == "clahe" and result.bundle.train_prior == 0.5
    assert result.bundle.config["photometric"] == 0.3
    assert result.data["n_train_balanced"] == result.data["n_train"]  # sampled, not copied


def test_label_smoothing_changes_the_run(tiny_dataset: Path) -> None:
    a = fit(_config(epochs=1), tiny_dataset)
    b = fit(_config(epochs=1, label_smoothing=0.2), tiny_dataset)
    first = next(iter(a.bundle.model.state_dict().values()))
    assert not torch.equal(first, next(iter(b.bundle.model.state_dict().values())))


@pytest.mark.parametrize("preset", ["seed", "tuned", None])
def test_a_diverged_run_stops_with_a_one_line_error(tiny_dataset: Path, preset: str) -> None:
    config = make_config("cnn", preset, img_size=32, epochs=3, batch_size=4, lr=1e12)
    with pytest.raises(TrainingDiverged) as info:
        fit(config, tiny_dataset)
    message = str(info.value)
    assert message.startswith("training diverged: ") and message.endswith("(now 1e+12)")
    assert "\n" not in message and TrainingDiverged.user_error
